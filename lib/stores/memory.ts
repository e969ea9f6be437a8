/**
 * The embedded store: bucket TATs in a Map, bounded by `maxKeys`, with the buckets chained
 * in the order of their last write, so the head of the chain is the least recently
 * charged bucket.
 *
 * The order is a linked list rather than the Map's own insertion order: keeping that order
 * up to date takes a delete and a set per write, and every delete leaves a hole that each
 * later walk from the Map's head steps over, until V8 rehashes the table. With a full store
 * under a flood of new identities, that made a decision cost tens of µs.
 */
import { adjustTat, decide } from '../gcra/math.js'
import type { LocalStore, SlotReply, StoreReply } from './contract.js'

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

/** One bucket, linked into the order of last write. */
interface Entry {
  readonly key: string
  tatUs: number
  /** Removed from the store (expired, evicted, deleted): a caller's handle to it is stale. */
  gone: boolean
  /** Written before this one (towards the head), or null. */
  older: Entry | null
  /** Written after this one (towards the tail), or null. */
  newer: Entry | null
}

export class MemoryStore implements LocalStore {
  readonly remote = false as const
  readonly #entries = new Map<string, Entry>()
  /** Concurrency slots held, per key: the process holds them, so no lease is needed. */
  readonly #slots = new Map<string, Set<string>>()
  readonly #maxKeys: number
  readonly #clock: () => number
  #evictedLive = 0
  /** The least recently charged bucket. */
  #head: Entry | null = null
  /** The most recently charged bucket. */
  #tail: Entry | null = null

  constructor (options: MemoryStoreOptions = {}) {
    this.#maxKeys = options.maxKeys ?? 100_000
    this.#clock = options.clock ?? (() => Date.now() * 1000)
  }

  /** Buckets held now (expired ones included until they are swept). */
  get size (): number {
    return this.#entries.size
  }

  /** Live buckets (TAT still ahead) evicted because the store was full: each lost some state. */
  get evictedLive (): number {
    return this.#evictedLive
  }

  decide (keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean, slackUs = 0, handles?: unknown[]): StoreReply {
    const nowUs = this.#clock()
    const n = keys.length
    // each key looked up once (or not at all, where the caller's handle is still its bucket):
    // the entries found are written in place
    const found = new Array<Entry | undefined>(n)
    const stored = new Array<number | undefined>(n)
    for (let i = 0; i < n; i++) {
      const key = keys[i]!
      let entry = handles?.[i] as Entry | undefined
      if (entry === undefined || entry.gone || entry.key !== key) {
        entry = this.#entries.get(key)
        if (handles !== undefined) handles[i] = entry
      }
      found[i] = entry
      stored[i] = entry?.tatUs
    }
    const tatsUs = new Array<number>(n)
    const allowed = decide(stored, capacitiesUs, incrementsUs, nowUs, tatsUs, charge, slackUs)
    if (allowed && charge) {
      // the entries found first: moved to the tail, no insertion below can evict them
      for (let i = 0; i < n; i++) if (found[i] !== undefined) this.#touch(found[i]!, tatsUs[i]!)
      for (let i = 0; i < n; i++) {
        if (found[i] !== undefined) continue
        const entry = this.#write(keys[i]!, tatsUs[i]!, nowUs)
        if (handles !== undefined) handles[i] = entry
      }
    }
    return { allowed, nowUs, tatsUs }
  }

  adjust (keys: readonly string[], capacitiesUs: readonly number[], deltasUs: readonly number[], slackUs = 0): StoreReply {
    const nowUs = this.#clock()
    const tatsUs = new Array<number>(keys.length)
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
      const tat = adjustTat(this.#entries.get(key)?.tatUs, nowUs, capacitiesUs[i]!, deltasUs[i]!, slackUs)
      if (tat <= nowUs) {
        this.delete([key])
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
    for (const key of keys) {
      const entry = this.#entries.get(key)
      if (entry !== undefined) this.#remove(entry)
    }
  }

  close (): void {
    // a caller's handle to an entry must not keep the rest of the chain alive
    for (const entry of this.#entries.values()) {
      entry.gone = true
      entry.older = entry.newer = null
    }
    this.#entries.clear()
    this.#slots.clear()
    this.#head = this.#tail = null
  }

  #write (key: string, tatUs: number, nowUs: number): Entry {
    let entry = this.#entries.get(key)
    if (entry === undefined) {
      if (this.#entries.size >= this.#maxKeys) this.#evict(nowUs)
      // kept as given: the plugin's keys are flat strings, kept by their callers too, so a
      // lookup finds the very same string (a key built by concatenation would hold its pieces)
      entry = { key, tatUs, gone: false, older: null, newer: null }
      this.#entries.set(key, entry)
    } else {
      this.#touch(entry, tatUs)
      return entry
    }
    this.#append(entry)
    return entry
  }

  /** A new TAT for a bucket held: it becomes the most recently charged. */
  #touch (entry: Entry, tatUs: number): void {
    entry.tatUs = tatUs
    if (entry === this.#tail) return
    this.#unlink(entry)
    this.#append(entry)
  }

  #append (entry: Entry): void {
    entry.older = this.#tail
    entry.newer = null
    if (this.#tail === null) this.#head = entry
    else this.#tail.newer = entry
    this.#tail = entry
  }

  #unlink (entry: Entry): void {
    if (entry.older === null) this.#head = entry.newer
    else entry.older.newer = entry.newer
    if (entry.newer === null) this.#tail = entry.older
    else entry.newer.older = entry.older
    entry.older = entry.newer = null
  }

  #remove (entry: Entry): void {
    this.#unlink(entry)
    this.#entries.delete(entry.key)
    entry.gone = true
  }

  #evict (nowUs: number): void {
    let entry = this.#head
    for (let looked = 0; entry !== null && looked < SWEEP; looked++) {
      const next = entry.newer
      if (entry.tatUs <= nowUs) this.#remove(entry)
      entry = next
    }
    if (this.#entries.size >= this.#maxKeys && this.#head !== null) {
      this.#remove(this.#head)
      this.#evictedLive++
    }
  }
}
