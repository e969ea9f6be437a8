/**
 * The limiter's decision as the tests drive it: the library's buckets and store on one
 * side, the same inputs as the reference model takes on the other.
 */
import { incrementUs, remainingUnits, toBucket, waitUs } from '../../lib/gcra/math.js'
import type { BucketStore } from '../../lib/stores/contract.js'
import type { ModelLimit, ModelResult } from './model.js'

const toNumber = (m: ModelLimit['multiplier']): number => (m === undefined ? 1 : Number(m[0]) / Number(m[1]))

/** One request through a library store, read back in the model's terms. */
export async function libStep (store: Pick<BucketStore, 'decide'>, keys: readonly string[], limits: readonly ModelLimit[], cost: number, charge = true): Promise<ModelResult & { nowUs: number }> {
  const buckets = limits.map(l => toBucket(l.max, l.perMs, l.burst, toNumber(l.multiplier)))
  const incs = buckets.map(b => incrementUs(cost, b.intervalUs))
  if (incs.some((inc, i) => inc > buckets[i]!.capacityUs)) {
    return { tooLarge: true, allowed: false, remaining: [], retryAfterUs: 0, tatsUs: [], ttlMs: [], holdUs: 0, nowUs: NaN }
  }
  const reply = await store.decide(keys, buckets.map(b => b.capacityUs), incs, charge)
  const now = reply.nowUs
  let retry = 0
  if (!reply.allowed) buckets.forEach((b, i) => { retry = Math.max(retry, waitUs(reply.tatsUs[i]!, now, incs[i]!, b)) })
  return {
    tooLarge: false,
    allowed: reply.allowed,
    remaining: buckets.map((b, i) => remainingUnits(reply.tatsUs[i]!, now, b)),
    retryAfterUs: retry,
    tatsUs: [...reply.tatsUs],
    ttlMs: reply.tatsUs.map(t => Math.ceil((t - now) / 1000)),
    // decided without a delay: an admitted charge never lies past D
    holdUs: 0,
    nowUs: now,
  }
}

/** The comparable part of a result (a 413 has no state to compare; no delay, so no hold). */
export function comparable (r: ModelResult): Omit<ModelResult, 'ttlMs' | 'holdUs'> {
  return r.tooLarge
    ? { tooLarge: true, allowed: false, remaining: [], retryAfterUs: 0, tatsUs: [] }
    : { tooLarge: false, allowed: r.allowed, remaining: r.remaining, retryAfterUs: r.retryAfterUs, tatsUs: r.tatsUs }
}
