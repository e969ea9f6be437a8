/**
 * Bounded maps: what is remembered per caller, per tier name or per scope must never grow
 * with what callers send. One kind for all of them: toad-cache's FifoMap (insertion order,
 * the oldest entry goes first when full), the cache @fastify/rate-limit and Fastify use.
 */
import { FifoMap } from 'toad-cache'

export type BoundedMap<V> = FifoMap<V>

export function boundedMap<V> (max: number): BoundedMap<V> {
  return new FifoMap<V>(max, 0)
}

/**
 * What was used lately, for the caches read on every request (callers by identity and by
 * address): two generations of plain Maps. A read looks in the young one, then in the old
 * one (and brings what it finds back into the young one); once the young one holds `max`
 * entries it becomes the old one, and the old one is dropped. So the last `max` entries
 * used are always there, at most 2 × `max` are held, and a hit is one Map lookup, with no
 * wrapper object per entry to read.
 */
export class RecentMap<V> {
  #young = new Map<string, V>()
  #old = new Map<string, V>()
  readonly #max: number

  constructor (max: number) {
    this.#max = Math.max(1, max)
  }

  get (key: string): V | undefined {
    const value = this.#young.get(key)
    if (value !== undefined) return value
    const old = this.#old.get(key)
    if (old !== undefined) this.set(key, old)
    return old
  }

  set (key: string, value: V): void {
    if (this.#young.size >= this.#max) {
      this.#old = this.#young
      this.#young = new Map()
    }
    this.#young.set(key, value)
  }

  /** Entries held, in both generations (one used in both counts twice). */
  get size (): number {
    return this.#young.size + this.#old.size
  }
}

/**
 * `true` the first time an id is seen, then `false`: one log line per tier name, scale
 * source or condition. At most `max` ids are remembered; past them nothing new is
 * reported, so garbage sent by callers can grow neither memory nor the log.
 */
export function firstTime (max = 1000): (id: string) => boolean {
  const seen = new Set<string>()
  return (id) => {
    if (seen.has(id) || seen.size >= max) return false
    seen.add(id)
    return true
  }
}
