/**
 * The local deny cache: after the store refuses a caller, this instance refuses that
 * caller's requests on its own, without a round trip, for as long as the refusal is
 * certain.
 *
 * Sound by construction: it keeps the TATs the store returned with the refusal and
 * decides with the pure GCRA. TATs in the store only grow, except by a reset (which forgets
 * the caller here) or a refund (which every instance hears of, through the store's refund
 * channel, and forgets the caller; the cache is off while that channel is down), so what
 * these snapshots refuse, the store would refuse too. The store's clock is estimated from the
 * time the call was sent, which over-estimates it: a later clock can only admit more, so
 * the estimate errs towards asking the store, never towards a false refusal.
 */
import { decide } from '../gcra/math.js'
import type { StoreReply } from '../stores/contract.js'
import { boundedMap, type BoundedMap } from '../util/bounded.js'

interface Entry {
  /** The TATs the refusal was decided on (µs, store clock). */
  readonly tatsUs: readonly number[]
  /** Store clock minus local clock, µs (measured at send: an over-estimate of the store's clock). */
  readonly offsetUs: number
  /** Local clock when the refusal was taken in (µs). */
  readonly atUs: number
}

// A snapshot holds at most this long: the store may lose its data (a restart, a failover
// to a lagging replica, eviction) or be reset from another instance.
const MAX_AGE_US = 10_000_000
// policy sets remembered per caller (dynamic scopes must not grow one caller's entry)
const MAX_SETS_PER_CALLER = 16

/** A local clock in µs: monotonic, so an estimate never runs backwards. */
export const localClockUs = (): number => Math.floor((performance.timeOrigin + performance.now()) * 1000)

export class DenyCache {
  // caller → (policy set id → snapshot); the oldest caller goes first when full
  readonly #entries: BoundedMap<BoundedMap<Entry>>
  /** Local clock of each caller's last reset: a refusal sent before it is stale. */
  readonly #resetAt: BoundedMap<number>
  #hits = 0
  /**
   * Off while this instance cannot hear other instances' refunds (a refund lowers TATs,
   * so a remembered refusal is only sound while refunds reach it): remembers and refuses nothing.
   */
  #active = true

  constructor (maxCallers = 10_000) {
    this.#entries = boundedMap(maxCallers)
    this.#resetAt = boundedMap(maxCallers)
  }

  /** Requests answered from the cache so far. */
  get hits (): number {
    return this.#hits
  }

  /** Callers with a snapshot. */
  get size (): number {
    return this.#entries.size
  }

  /** Snapshots held, all callers together. */
  get entries (): number {
    let n = 0
    for (const caller of this.#entries.keys()) n += this.#entries.get(caller)?.size ?? 0
    return n
  }

  get active (): boolean {
    return this.#active
  }

  /** Turn the cache on or off; either way it starts empty (refunds may have been missed). */
  set active (on: boolean) {
    this.#active = on
    this.#entries.clear()
  }

  /** Remember a refusal the store made. `sentAtUs`: the local clock when the call was sent. */
  remember (caller: string, setId: number, reply: StoreReply, sentAtUs: number): void {
    if (!this.#active) return
    const resetAt = this.#resetAt.get(caller)
    if (resetAt !== undefined) {
      // decided before a reset that has deleted its buckets since: not true any more
      if (sentAtUs <= resetAt) return
      if (localClockUs() - resetAt > MAX_AGE_US) this.#resetAt.delete(caller)
    }
    let sets = this.#entries.get(caller)
    if (sets === undefined) this.#entries.set(caller, sets = boundedMap(MAX_SETS_PER_CALLER))
    sets.set(setId, { tatsUs: reply.tatsUs, offsetUs: reply.nowUs - sentAtUs, atUs: localClockUs() })
  }

  /**
   * A refusal decided locally, or undefined when only the store can tell (then the
   * snapshot is dropped: it no longer refuses anything).
   */
  check (caller: string, setId: number, capacitiesUs: readonly number[], incrementsUs: readonly number[], slackUs = 0): StoreReply | undefined {
    const sets = this.#entries.get(caller)
    const entry = sets?.get(setId)
    if (entry === undefined) return undefined
    const localUs = localClockUs()
    const nowUs = localUs + entry.offsetUs
    const tatsUs: number[] = []
    if (localUs - entry.atUs > MAX_AGE_US || decide(entry.tatsUs, capacitiesUs, incrementsUs, nowUs, tatsUs, false, slackUs)) {
      sets!.delete(setId)
      if (sets!.size === 0) this.#entries.delete(caller)
      return undefined
    }
    this.#hits++
    return { allowed: false, nowUs, tatsUs }
  }

  /** Forget a caller, and ignore refusals for it that were sent before now (a reset). */
  forget (caller: string): void {
    this.#entries.delete(caller)
    // re-inserted, so that the most recent resets are the ones kept
    this.#resetAt.delete(caller)
    this.#resetAt.set(caller, localClockUs())
  }

  clear (): void {
    this.#entries.clear()
  }
}
