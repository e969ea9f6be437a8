/**
 * The reference model of DESIGN.md's GCRA, written independently of lib/: exact
 * rational arithmetic in BigInt, one Map of TATs, the formulas as the contract states
 * them. Times are integer µs. Rounding (the library's documented whole-µs rule):
 * T = ceil(per / max'), D = floor(B' · T), increment = ceil(c · T).
 */

/** A rational p/q, written as [p, q]. */
export type Ratio = readonly [bigint, bigint]

export interface ModelLimit {
  max: number
  perMs: number
  burst: number
  /** Tier multiplier as a ratio. @default [1n, 1n] */
  multiplier?: Ratio
}

export interface ModelResult {
  /** The cost can never fit some limit: a 413, nothing charged. */
  tooLarge: boolean
  allowed: boolean
  /** Per limit: floor((D − (TAT − now)) / T) after the decision. */
  remaining: number[]
  /** Largest new − now − D over the refusing limits, µs; 0 when allowed. */
  retryAfterUs: number
  /** Per limit: the TAT after the decision (max(stored, now) when refused). */
  tatsUs: number[]
  /** Per limit: the TTL the key gets when charged, ms. */
  ttlMs: number[]
  /** With a delay: how long an admitted charge waits for its slot, max(0, new − now − D) over the limits, µs. */
  holdUs: number
}

const ceilDiv = (a: bigint, b: bigint): bigint => (a + b - 1n) / b
const maxBig = (a: bigint, b: bigint): bigint => (a > b ? a : b)

/** A decimal number as an exact ratio (the test inputs are short decimals). */
export function ratio (x: number): Ratio {
  const text = String(x)
  const dot = text.indexOf('.')
  if (dot === -1) return [BigInt(text), 1n]
  const decimals = text.length - dot - 1
  return [BigInt(text.replace('.', '')), 10n ** BigInt(decimals)]
}

export function bucketOf (limit: ModelLimit): { T: bigint, D: bigint } {
  const [a, b] = limit.multiplier ?? [1n, 1n]
  const perUs = BigInt(limit.perMs) * 1000n
  const T = maxBig(1n, ceilDiv(perUs * b, BigInt(limit.max) * a)) // per / (max · a/b)
  const D = (BigInt(limit.burst) * a * T) / b // floor(B · a/b · T)
  return { T, D }
}

export function incrementOf (cost: number, T: bigint): bigint {
  const [p, q] = ratio(cost)
  return maxBig(1n, ceilDiv(p * T, q))
}

export class GcraModel {
  readonly tats = new Map<string, bigint>()

  /** `delayUs`: the route's delay, DESIGN.md's shaping: allowed iff new − now ≤ D + delay. */
  request (keys: readonly string[], limits: readonly ModelLimit[], cost: number, nowUs: number, charge = true, delayUs = 0): ModelResult {
    const now = BigInt(nowUs)
    const delay = BigInt(delayUs)
    const buckets = limits.map(bucketOf)
    const incs = buckets.map(b => incrementOf(cost, b.T))
    const tooLarge = incs.some((inc, i) => inc > buckets[i]!.D)
    const starts = keys.map(k => maxBig(this.tats.get(k) ?? now, now))
    const news = starts.map((tat, i) => tat + incs[i]!)
    const allowed = !tooLarge && news.every((n, i) => n - now <= buckets[i]!.D + delay)
    let retry = 0n
    if (!allowed && !tooLarge) {
      news.forEach((n, i) => { const over = n - now - buckets[i]!.D - delay; if (over > retry) retry = over })
    }
    let hold = 0n
    if (allowed && charge) news.forEach((n, i) => { const past = n - now - buckets[i]!.D; if (past > hold) hold = past })
    const after = allowed && charge ? news : starts
    if (allowed && charge) keys.forEach((k, i) => this.tats.set(k, news[i]!))
    return {
      tooLarge,
      allowed,
      remaining: after.map((tat, i) => Number((buckets[i]!.D - (tat - now)) / buckets[i]!.T)),
      retryAfterUs: Number(retry),
      tatsUs: after.map(Number),
      ttlMs: after.map(tat => Number(ceilDiv(tat - now, 1000n))),
      holdUs: Number(hold),
    }
  }

  /**
   * Settle a charge of `charged` units at `actual` units: each TAT moves by
   * inc(actual) − inc(charged) (inc(0) = 0) from max(TAT, now), and ends at most at
   * max(TAT, now + D) for a charge (a bucket is never more than empty; held charges stay); a TAT at or before now is a full bucket
   * (the key is gone).
   */
  settle (keys: readonly string[], limits: readonly ModelLimit[], charged: number, actual: number, nowUs: number): number[] {
    const now = BigInt(nowUs)
    return keys.map((key, i) => {
      const { T, D } = bucketOf(limits[i]!)
      const delta = (actual === 0 ? 0n : incrementOf(actual, T)) - incrementOf(charged, T)
      const start = maxBig(this.tats.get(key) ?? now, now)
      const moved = start + delta
      // a charge never takes a bucket past empty (now + D), nor past where it stood (held charges)
      const ceiling = maxBig(start, now + D)
      const tat = delta > 0n && moved > ceiling ? ceiling : moved
      if (tat <= now) {
        this.tats.delete(key)
        return nowUs
      }
      this.tats.set(key, tat)
      return Number(tat)
    })
  }
}
