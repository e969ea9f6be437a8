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

export class Caller {
  /** The hashed identity: the {hash tag} of every store key of this caller. */
  readonly key: string
  readonly #sets: PolicySet[] = []
  readonly #keys: Array<readonly string[]> = []
  /** The place the next new set takes once all are used. */
  #next = 0

  constructor (key: string) {
    this.key = key
  }

  /** The store keys of this caller's buckets of `set` (shared: never to be changed), built by `build` when not kept. */
  keysOf (set: PolicySet, build: (hashedKey: string, set: PolicySet) => readonly string[]): readonly string[] {
    const sets = this.#sets
    for (let i = 0; i < sets.length; i++) if (sets[i] === set) return this.#keys[i]!
    const keys = build(this.key, set)
    if (sets.length < KEPT_SETS) {
      sets.push(set)
      this.#keys.push(keys)
    } else {
      // a caller whose sets change (a scale that moves) keeps the keys of the latest ones
      sets[this.#next] = set
      this.#keys[this.#next] = keys
      this.#next = (this.#next + 1) % KEPT_SETS
    }
    return keys
  }
}
