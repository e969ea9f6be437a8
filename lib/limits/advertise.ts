/**
 * The `q` and `w` a policy advertises in `RateLimit-Policy` (and `q` as `X-RateLimit-Limit`):
 * Integers, `w` in seconds ≥ 1, with `q / w` the policy's true rate `max' / per` and `q` at
 * least its capacity `burst'`, so that `r ≤ q` always (`r = floor((D − (TAT − now)) / T)`
 * is at most `floor(D / T) ≤ burst'`). Computed once per policy, when it is built.
 */
import { roundUp } from '../gcra/math.js'

/** The largest denominator a multiplier (tier × scale, a float) is read as a ratio with. */
const MAX_DENOMINATOR = 1_000_000n
/** How close (relative) that ratio must be: float noise (0.1 * 3), nothing more. */
const RATIO_TOLERANCE = 1e-14
/** An exact window may be up to this many times the longer of the refill time and the period… */
const MAX_STRETCH = 100
/** …and up to an hour in any case. */
const LONG_ENOUGH_S = 3600
/** Windows tried for the nearest pair when no exact one is that short. */
const SEARCH = 4000
/** The largest RFC 9651 Integer. */
const MAX_INTEGER = 999_999_999_999_999

export interface Advertised {
  /** `q`: whole units, at least the capacity. */
  readonly quota: number
  /** `w`: whole seconds, at least 1. */
  readonly windowS: number
}

function gcd (a: bigint, b: bigint): bigint {
  let x = a
  let y = b
  while (y !== 0n) {
    const r = x % y
    x = y
    y = r
  }
  return x
}

const ceilDiv = (a: bigint, b: bigint): bigint => (a + b - 1n) / b

/** `x` as `[a, b]` with `a / b` within float noise of it and `b` bounded (continued fractions), or undefined. */
export function ratio (x: number): [bigint, bigint] | undefined {
  if (!(x > 0) || !Number.isFinite(x)) return undefined
  let p0 = 0n
  let q0 = 1n
  let p1 = 1n
  let q1 = 0n
  let rest = x
  for (let i = 0; i < 64; i++) {
    const whole = Math.floor(rest)
    const a = BigInt(whole)
    const p2 = a * p1 + p0
    const q2 = a * q1 + q0
    p0 = p1
    q0 = q1
    p1 = p2
    q1 = q2
    if (q1 > MAX_DENOMINATOR) return undefined
    if (Math.abs(Number(p1) / Number(q1) - x) <= x * RATIO_TOLERANCE) return [p1, q1]
    const fraction = rest - whole
    if (fraction === 0) return undefined
    rest = 1 / fraction
  }
  return undefined
}

/**
 * `q` and `w` of `max` per `perMs` with `burst`, times `multiplier` (tier × scale);
 * `capacityUnits` is `floor(D / T)` of the policy's bucket, the most `r` can ever be.
 *
 * The rate is taken as an exact ratio N/d per second, and `w` is the smallest multiple of
 * d (so that `q = rate · w` is an integer) no shorter than the time the capacity takes to
 * refill. When that window would be absurdly long (longer than an hour and than 100 times
 * the refill time and the period: a float multiplier with no small ratio, a period such as
 * 3601 ms), the nearest pair among a bounded run of windows is advertised instead: `q / w`
 * is then the rate within a few parts in 10 000 (the more units, the closer), and `q`
 * still holds the capacity.
 */
export function advertise (max: number, perMs: number, burst: number, multiplier: number, capacityUnits: number): Advertised {
  // q ≥ burst' as an Integer: ceil(burst'), and never below what r can say
  const need = Math.max(1, capacityUnits, roundUp(burst * multiplier))
  const periodS = Math.max(1, Math.ceil(perMs / 1000))
  const m = ratio(multiplier)
  if (m !== undefined) {
    let n = BigInt(max) * m[0] * 1000n
    let d = m[1] * BigInt(perMs)
    const g = gcd(n, d)
    n /= g
    d /= g
    // the refill time of `need` units, in whole seconds: need / (n / d)
    const shortest = ceilDiv(BigInt(need) * d, n)
    const w = ceilDiv(shortest, d) * d
    const q = (n * w) / d
    if (w <= BigInt(longestWindow(Number(shortest), periodS)) && q <= BigInt(MAX_INTEGER)) return { quota: Number(q), windowS: Number(w) }
  }
  return nearest((max * multiplier * 1000) / perMs, need, periodS)
}

function longestWindow (shortestS: number, periodS: number): number {
  return Math.max(LONG_ENOUGH_S, MAX_STRETCH * Math.max(shortestS, periodS))
}

/** The pair closest to `ratePerS` among a bounded run of windows, with `q ≥ need`. */
function nearest (ratePerS: number, need: number, periodS: number): Advertised {
  const first = Math.max(1, Math.floor(need / ratePerS))
  const last = Math.min(first + SEARCH - 1, longestWindow(first, periodS))
  let best: Advertised = { quota: Math.max(need, Math.round(ratePerS * first)), windowS: first }
  let error = Math.abs(best.quota / first - ratePerS)
  for (let w = first + 1; w <= last && error > 0; w++) {
    const q = Math.max(need, Math.round(ratePerS * w))
    if (q > MAX_INTEGER) break
    const e = Math.abs(q / w - ratePerS)
    if (e < error) {
      best = { quota: q, windowS: w }
      error = e
    }
  }
  return best
}
