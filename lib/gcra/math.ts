/**
 * The GCRA decision as pure functions of (stored TATs, buckets, costs, now).
 * Every time is an integer number of microseconds on the store's clock; integers keep
 * the memory store, the Lua script and the reference model bit-for-bit equal.
 */

/** A limit turned into GCRA terms for one tier. */
export interface Bucket {
  /** Emission interval T = per / max', whole µs, rounded up so the limit is never exceeded. */
  readonly intervalUs: number
  /** Capacity D = burst' · T, whole µs. */
  readonly capacityUs: number
}

// Products like 60e6 / (10 * 1.1) land a few ulps off an integer; do not let that add or
// drop a µs. The tolerance is relative (~170 ulps): far above float noise, far below any
// real fraction of a µs the inputs can produce.
const TOLERANCE = 2 ** -44

function nearInteger (x: number): number | undefined {
  const nearest = Math.round(x)
  return Math.abs(x - nearest) <= Math.abs(x) * TOLERANCE + 1e-9 ? nearest : undefined
}

/** `x` rounded up to a whole number, unless it is one but for float noise. */
export function roundUp (x: number): number {
  return nearInteger(x) ?? Math.ceil(x)
}

function roundDown (x: number): number {
  return nearInteger(x) ?? Math.floor(x)
}

/** T and D of `max` per `perMs` with `burst`, scaled by a tier multiplier. */
export function toBucket (max: number, perMs: number, burst: number, multiplier: number): Bucket {
  const intervalUs = Math.max(1, roundUp((perMs * 1000) / (max * multiplier)))
  return { intervalUs, capacityUs: roundDown(burst * multiplier * intervalUs) }
}

/** What a request of `cost` adds to a TAT: c · T in whole µs, rounded up; a free request (cost 0) adds nothing, any other at least 1 µs. */
export function incrementUs (cost: number, intervalUs: number): number {
  return cost === 0 ? 0 : Math.max(1, roundUp(cost * intervalUs))
}

/**
 * The TAT a decision starts from: max(stored, now). A stored value that is not a finite
 * number is absent; one beyond now + D (left by a larger limit) counts as an empty bucket.
 */
export function startTat (stored: number | undefined | null, nowUs: number, capacityUs: number): number {
  if (stored === undefined || stored === null || !Number.isFinite(stored) || stored <= nowUs) return nowUs
  const ceiling = nowUs + capacityUs
  return stored > ceiling ? ceiling : stored
}

/**
 * Decide a request over all its buckets at once. `tats` receives the TAT of every bucket
 * after the decision: the new ones when allowed, the unchanged (start) ones when refused.
 * Returns whether every bucket admits the request.
 *
 * `capacitiesUs` are what admits (D, plus a route's delay); `slackUs` how far past them a
 * stored TAT is still true state rather than a larger limit's leftover (the longest delay
 * of the app's routes, less this decision's): `startTat` reads a TAT up to now + cap + slack.
 */
export function decide (
  stored: ArrayLike<number | undefined | null>,
  capacitiesUs: ArrayLike<number>,
  incrementsUs: ArrayLike<number>,
  nowUs: number,
  tats: number[],
  charge = true,
  slackUs = 0,
): boolean {
  const n = capacitiesUs.length
  let allowed = true
  for (let i = 0; i < n; i++) {
    const tat = startTat(stored[i], nowUs, capacitiesUs[i]! + slackUs)
    tats[i] = tat
    if (tat + incrementsUs[i]! - nowUs > capacitiesUs[i]!) allowed = false
  }
  if (allowed && charge) {
    for (let i = 0; i < n; i++) tats[i] = tats[i]! + incrementsUs[i]!
  }
  return allowed
}

/** Whole units a bucket can still admit at `nowUs`: floor((D − (TAT − now)) / T). */
export function remainingUnits (tatUs: number, nowUs: number, bucket: Bucket): number {
  const used = tatUs > nowUs ? tatUs - nowUs : 0
  return Math.max(0, Math.floor((bucket.capacityUs - used) / bucket.intervalUs))
}

/** µs until a request adding `incUs` to this bucket would fit: TAT + inc − now − D (≤ 0 when it fits). */
export function waitUs (tatUs: number, nowUs: number, incUs: number, bucket: Bucket): number {
  return Math.max(tatUs, nowUs) + incUs - nowUs - bucket.capacityUs
}

/** µs until the bucket holds one more whole unit than now; 0 when it is full. */
export function nextUnitUs (tatUs: number, nowUs: number, bucket: Bucket): number {
  if (tatUs <= nowUs) return 0
  const units = remainingUnits(tatUs, nowUs, bucket)
  const at = Math.min(tatUs, tatUs - bucket.capacityUs + (units + 1) * bucket.intervalUs)
  return Math.max(0, at - nowUs)
}

/** The largest cost a bucket can ever admit: D / T. */
export function maxCost (bucket: Bucket): number {
  return bucket.capacityUs / bucket.intervalUs
}

/**
 * Settle a charge: move a bucket's TAT by `deltaUs` (negative: a refund) from where a
 * decision would start (`startTat`, reading held charges up to `slackUs` past D). A bucket
 * is never more than empty: a charge ends at most at now + D, or where the TAT already
 * stood (held charges), so an overrun beyond an empty bucket is not carried over; a refund
 * keeps every other held charge. A TAT at or before `nowUs` is a full bucket (nothing to store).
 */
export function adjustTat (stored: number | undefined | null, nowUs: number, capacityUs: number, deltaUs: number, slackUs = 0): number {
  const start = startTat(stored, nowUs, capacityUs + slackUs)
  const tat = start + deltaUs
  if (deltaUs <= 0) return tat
  const ceiling = start > nowUs + capacityUs ? start : nowUs + capacityUs
  return tat > ceiling ? ceiling : tat
}
