/**
 * The embedded store: bucket TATs in a Map, bounded by `maxKeys`. The Map's order is the
 * order of last write, so its head is the least recently charged bucket.
 */
import { adjustTat, decide } from '../gcra.js'
import type { RateLimitStore, SlotReply, StoreReply } from './store.js'

export interface MemoryStoreOptions {
  /**
   * The most buckets kept; past it, expired buckets go first, then the least recently charged.
   * @default 100000
   */
  maxKeys?: number
  /**
   * The clock, in integer µs. Tests pass their own.
   * @default () => Date.now() * 1000
   */
  clock?: () => number
}

// How many of the oldest entries one eviction looks at for expired buckets before it
// evicts a live one: bounded, so a full store never makes one request slow.
const SWEEP = 64

export class MemoryStore implements RateLimitStore {
  readonly #tats = new Map<string, number>()
  /** Concurrency slots held, per key: the process holds them, so no lease is needed. */
  readonly #slots = new Map<string, Set<string>>()
  readonly #maxKeys: number
  readonly #clock: () => number
  #evictedLive = 0

  constructor (options: MemoryStoreOptions = {}) {
    this.#maxKeys = options.maxKeys ?? 100_000
    this.#clock = options.clock ?? (() => Date.now() * 1000)
  }

  /** Buckets held now (expired ones included until they are swept). */
  get size (): number {
    return this.#tats.size
  }

  /** Live buckets (TAT still ahead) evicted because the store was full: each lost some state. */
  get evictedLive (): number {
    return this.#evictedLive
  }

  decide (keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean): StoreReply {
    const nowUs = this.#clock()
    const n = keys.length
    const stored = new Array<number | undefined>(n)
    for (let i = 0; i < n; i++) stored[i] = this.#tats.get(keys[i]!)
    const tatsUs = new Array<number>(n)
    const allowed = decide(stored, capacitiesUs, incrementsUs, nowUs, tatsUs, charge)
    if (allowed && charge) {
      for (let i = 0; i < n; i++) this.#write(keys[i]!, tatsUs[i]!, nowUs)
    }
    return { allowed, nowUs, tatsUs }
  }

  adjust (keys: readonly string[], capacitiesUs: readonly number[], deltasUs: readonly number[]): StoreReply {
    const nowUs = this.#clock()
    const tatsUs = new Array<number>(keys.length)
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
      const tat = adjustTat(this.#tats.get(key), nowUs, capacitiesUs[i]!, deltasUs[i]!)
      if (tat <= nowUs) {
        this.#tats.delete(key)
        tatsUs[i] = nowUs
      } else {
        this.#write(key, tat, nowUs)
        tatsUs[i] = tat
      }
    }
    return { allowed: true, nowUs, tatsUs }
  }

  acquire (key: string, limit: number, token: string): SlotReply {
    let held = this.#slots.get(key)
    if (held === undefined) this.#slots.set(key, held = new Set())
    if (held.size >= limit) return { acquired: false, inFlight: held.size }
    held.add(token)
    return { acquired: true, inFlight: held.size }
  }

  renew (): void {}

  release (key: string, token: string): void {
    const held = this.#slots.get(key)
    if (held === undefined) return
    held.delete(token)
    if (held.size === 0) this.#slots.delete(key)
  }

  /** Concurrency slots held now, over every key. */
  get slotsHeld (): number {
    let n = 0
    for (const held of this.#slots.values()) n += held.size
    return n
  }

  delete (keys: readonly string[]): void {
    for (const key of keys) this.#tats.delete(key)
  }

  close (): void {
    this.#tats.clear()
    this.#slots.clear()
  }

  #write (key: string, tatUs: number, nowUs: number): void {
    const tats = this.#tats
    if (!tats.delete(key) && tats.size >= this.#maxKeys) this.#evict(nowUs)
    tats.set(key, tatUs)
  }

  #evict (nowUs: number): void {
    const tats = this.#tats
    let looked = 0
    for (const [key, tat] of tats) {
      if (tat <= nowUs) tats.delete(key)
      if (++looked === SWEEP) break
    }
    if (tats.size >= this.#maxKeys) {
      const oldest = tats.keys().next().value as string
      tats.delete(oldest)
      this.#evictedLive++
    }
  }
}
