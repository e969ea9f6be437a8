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
