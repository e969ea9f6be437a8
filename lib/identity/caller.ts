/**
 * A caller this process has seen lately: its hashed identity, and the store keys of its
 * buckets for each policy set it met, built once. A request of a known caller on a known
 * route builds no key: the same strings go to the store each time, and a memory store's
 * Map finds them by the hash the string already holds.
 */
import type { PolicySet } from '../limits/policy.js'

/**
 * Policy sets whose keys a caller keeps (most callers meet one or two): bounds its memory.
 * Past them, a new set takes the place of the one kept longest.
 */
export const KEPT_SETS = 4

/** A caller's buckets of one policy set: their store keys, and a memory store's place to keep what it found for them. */
export interface CallerBuckets {
  readonly keys: readonly string[]
  /**
   * Opaque to everyone but the memory store: the buckets it found for `keys` last time,
   * checked and brought up to date on each decision, so a known caller's next one needs
   * no lookup.
   */
  readonly handles: unknown[]
}

export class Caller {
  /** The hashed identity: the {hash tag} of every store key of this caller. */
  readonly key: string
  // the first set met and its buckets in fields of their own: most callers meet one set,
  // and a request then finds its keys with no array to read
  #set: PolicySet | undefined = undefined
  #buckets: CallerBuckets | undefined = undefined
  // further sets, in the order they came (at most KEPT_SETS - 1)
  #sets: PolicySet[] | undefined = undefined
  #more: CallerBuckets[] | undefined = undefined
  /** The place the next new set takes once all are used (0 is the first set's field). */
  #next = 0

  constructor (key: string) {
    this.key = key
  }

  /** The store keys of this caller's buckets of `set` (shared: never to be changed), built by `build` when not kept. */
  keysOf (set: PolicySet, build: (hashedKey: string, set: PolicySet) => readonly string[]): readonly string[] {
    return this.bucketsOf(set, build).keys
  }

  /** This caller's buckets of `set`, their keys built by `build` when not kept. */
  bucketsOf (set: PolicySet, build: (hashedKey: string, set: PolicySet) => readonly string[]): CallerBuckets {
    if (this.#set === set) return this.#buckets!
    const sets = this.#sets
    if (sets !== undefined) for (let i = 0; i < sets.length; i++) if (sets[i] === set) return this.#more![i]!
    const buckets: CallerBuckets = { keys: build(this.key, set), handles: [] }
    if (this.#set === undefined) {
      this.#set = set
      this.#buckets = buckets
    } else if (sets === undefined || sets.length < KEPT_SETS - 1) {
      (this.#sets ??= []).push(set)
      ;(this.#more ??= []).push(buckets)
    } else {
      // a caller whose sets change (a scale that moves) keeps the keys of the latest ones
      const at = this.#next
      if (at === 0) {
        this.#set = set
        this.#buckets = buckets
      } else {
        sets[at - 1] = set
        this.#more![at - 1] = buckets
      }
      this.#next = (at + 1) % KEPT_SETS
    }
    return buckets
  }
}
