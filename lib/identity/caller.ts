/**
 * A caller this process has seen lately: its hashed identity, and the store keys of its
 * buckets for each policy set it met, built once. A request of a known caller on a known
 * route builds no key: the same strings go to the store each time, and a memory store's
 * Map finds them by the hash the string already holds.
 */
import type { PolicySet } from '../limits/policy.js'

/** Policy sets whose keys a caller keeps (most callers meet one or two): bounds its memory. */
const KEPT_SETS = 4

export class Caller {
  /** The hashed identity: the {hash tag} of every store key of this caller. */
  readonly key: string
  readonly #sets: PolicySet[] = []
  readonly #keys: Array<readonly string[]> = []

  constructor (key: string) {
    this.key = key
  }

  /** The store keys of this caller's buckets of `set`, built by `build` the first time. */
  keysOf (set: PolicySet, build: (hashedKey: string, set: PolicySet) => readonly string[]): readonly string[] {
    const sets = this.#sets
    for (let i = 0; i < sets.length; i++) if (sets[i] === set) return this.#keys[i]!
    const keys = build(this.key, set)
    if (sets.length < KEPT_SETS) {
      sets.push(set)
      this.#keys.push(keys)
    }
    return keys
  }
}
