/**
 * The local deny cache: after the store refuses a caller, this instance refuses that
 * caller's requests on its own, without a round trip, for as long as the refusal is
 * certain.
 *
 * Sound by construction: it keeps the TATs the store returned with the refusal and
 * decides with the pure GCRA. TATs in the store only grow (until a reset), so what these
 * snapshots refuse, the store would refuse too. The store's clock is estimated from the
 * time the call was sent, which over-estimates it: a later clock can only admit more, so
 * the estimate errs towards asking the store, never towards a false refusal.
 */
import { decide } from './gcra.js'
import type { StoreReply } from './stores/store.js'

interface Entry {
  /** The TATs the refusal was decided on (µs, store clock). */
  readonly tatsUs: readonly number[]
  /** Store clock minus local clock, µs (measured at send: an over-estimate of the store's clock). */
  readonly offsetUs: number
}

/** A local clock in µs: monotonic, so an estimate never runs backwards. */
export const localClockUs = (): number => Math.floor((performance.timeOrigin + performance.now()) * 1000)

export class DenyCache {
  // caller → (policy set id → snapshot); the outer Map's order is the order of insertion
  readonly #entries = new Map<string, Map<number, Entry>>()
  readonly #maxCallers: number
  #hits = 0

  constructor (maxCallers = 10_000) {
    this.#maxCallers = maxCallers
  }

  /** Requests answered from the cache so far. */
  get hits (): number {
    return this.#hits
  }

  get size (): number {
    return this.#entries.size
  }

  /** Remember a refusal the store made. `sentAtUs`: the local clock when the call was sent. */
  remember (caller: string, setId: number, reply: StoreReply, sentAtUs: number): void {
    let sets = this.#entries.get(caller)
    if (sets === undefined) {
      if (this.#entries.size >= this.#maxCallers) this.#entries.delete(this.#entries.keys().next().value as string)
      sets = new Map()
      this.#entries.set(caller, sets)
    }
    sets.set(setId, { tatsUs: reply.tatsUs, offsetUs: reply.nowUs - sentAtUs })
  }

  /**
   * A refusal decided locally, or undefined when only the store can tell (then the
   * snapshot is dropped: it no longer refuses anything).
   */
  check (caller: string, setId: number, capacitiesUs: readonly number[], incrementsUs: readonly number[]): StoreReply | undefined {
    const sets = this.#entries.get(caller)
    const entry = sets?.get(setId)
    if (entry === undefined) return undefined
    const nowUs = localClockUs() + entry.offsetUs
    const tatsUs: number[] = []
    if (decide(entry.tatsUs, capacitiesUs, incrementsUs, nowUs, tatsUs, false)) {
      sets!.delete(setId)
      if (sets!.size === 0) this.#entries.delete(caller)
      return undefined
    }
    this.#hits++
    return { allowed: false, nowUs, tatsUs }
  }

  /** Forget a caller (after a reset). */
  forget (caller: string): void {
    this.#entries.delete(caller)
  }

  clear (): void {
    this.#entries.clear()
  }
}
