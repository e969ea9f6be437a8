/**
 * The `q` and `w` of `RateLimit-Policy`: Integers, `w ≥ 1`, `q / w` the true rate
 * `max' / per` and `q` the capacity (`q ≥ burst'`), so that `r ≤ q` always.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { advertise, ratio } from '../../lib/limits/advertise.js'
import { normaliseLimit, type Limit, type LimitSpec } from '../../lib/limits/limit.js'
import { buildPolicy, buildSet, routeScope } from '../../lib/limits/policy.js'

const limit = (spec: LimitSpec): Limit => normaliseLimit(spec) as Limit
const field = (spec: LimitSpec, multiplier = 1): string => {
  const p = buildPolicy(limit(spec), multiplier, routeScope('GET /x'))
  return `q=${p.advertisedQuota};w=${p.advertisedWindowS}`
}

// how close the fallback comes, relative: with q ≥ 1 over at most 4000 windows, a few in 10 000
const FALLBACK_TOLERANCE = 5e-4

describe('the advertised q and w', () => {
  it.each([
    ['10/minute', 1, 'q=10;w=60'],
    ['100/15 minutes', 1, 'q=100;w=900'],
    ['5/30s', 1, 'q=5;w=30'],
    [{ max: 10, per: '1 minute', burst: 20 }, 1, 'q=20;w=120'],
    [{ max: 10, per: '1 minute', burst: 4 }, 1, 'q=4;w=24'],
    [{ max: 3, per: '500ms' }, 1, 'q=6;w=1'],
    [{ max: 1, per: '250ms' }, 1, 'q=4;w=1'],
    // 2 a second over the 1.5 s a full bucket takes to refill: the next whole second
    [{ max: 3, per: 1500 }, 1, 'q=4;w=2'],
    [{ max: 5, per: '1s', burst: 20 }, 1, 'q=20;w=4'],
    ['10/minute', 1.5, 'q=15;w=60'],
    ['10/minute', 0.5, 'q=5;w=60'],
    ['10/minute', 0.1 * 3, 'q=3;w=60'],
    // 3.3 a minute: 11 per 200 s
    ['10/minute', 0.33, 'q=11;w=200'],
    ['2/minute', 5, 'q=10;w=60'],
    ['1/day', 0.01, 'q=1;w=8640000'],
  ] as Array<[LimitSpec, number, string]>)('%j × %d: %s', (spec, multiplier, expected) => {
    expect(field(spec, multiplier)).toBe(expected)
  })

  it('come from the policy, once: the set\'s field is made of them', () => {
    const a = buildPolicy(limit({ max: 10, per: '1 minute', burst: 20 }), 1, routeScope('GET /x'))
    const b = buildPolicy(limit({ max: 3, per: 500, name: 'fast' }), 1, routeScope('GET /x'))
    expect(buildSet([a, b], 1).policyField).toBe('"10/minute burst 20";q=20;w=120, "fast";q=6;w=1')
    // quota keeps meaning max' (request.rateLimit.policies[].quota)
    expect([a.quota, a.advertisedQuota, b.quota, b.advertisedQuota]).toEqual([10, 20, 3, 6])
  })

  it('read a multiplier as the ratio it stands for, and give up on one with no small ratio', () => {
    expect(ratio(0.1 * 3)).toEqual([3n, 10n])
    expect(ratio(1.5 * 0.37)).toEqual([111n, 200n])
    expect(ratio(4)).toEqual([4n, 1n])
    expect(ratio(Math.PI)).toBeUndefined()
    expect(ratio(0)).toBeUndefined()
  })

  it('fall back to the nearest pair when the exact window would be absurd', () => {
    // 7 per 3601 ms: the exact window is 3601 s, longer than an hour and 900 times the period
    const { quota, windowS } = advertise(7, 3601, 7, 1, 7)
    const rate = 7000 / 3601
    expect(windowS).toBeLessThan(3601)
    expect(Math.abs(quota / windowS - rate)).toBeLessThan(rate * 1e-5)
    expect(quota).toBeGreaterThanOrEqual(7)
  })
})

const period = fc.oneof(
  fc.constantFrom(1, 250, 500, 1000, 1500, 7000, 60_000, 900_000, 3_600_000, 86_400_000),
  fc.integer({ min: 1, max: 10_000_000 }),
)
const tierMultiplier = fc.oneof(
  fc.constantFrom(1, 2, 5, 0.5, 1.5, 2.5, 1.1, 0.1 * 3),
  fc.double({ min: 0.01, max: 100, noNaN: true }),
)

describe('the advertised q and w (properties)', () => {
  it('are Integers with w ≥ 1, q ≥ burst\' and q ≥ floor(D / T), and q / w is the rate within 5e-4', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 1000 }), period, fc.integer({ min: 1, max: 2000 }), tierMultiplier, fc.integer({ min: 1, max: 100 }),
      (max, perMs, burst, tier, hundredths) => {
        // as a route plan builds a scaled set: the tier's multiplier times the scale
        const multiplier = tier * (hundredths / 100)
        const p = buildPolicy({ name: 'p', max, perMs, burst }, multiplier, routeScope('GET /x'))
        const q = p.advertisedQuota
        const w = p.advertisedWindowS
        expect(Number.isSafeInteger(q) && q >= 1 && q <= 999_999_999_999_999).toBe(true)
        expect(Number.isSafeInteger(w) && w >= 1).toBe(true)
        expect(q).toBeGreaterThanOrEqual(Math.floor(p.capacityUs / p.intervalUs))
        expect(q).toBeGreaterThanOrEqual(burst * multiplier * (1 - 1e-12))
        const rate = (max * multiplier * 1000) / perMs
        expect(Math.abs(q / w - rate)).toBeLessThanOrEqual(rate * FALLBACK_TOLERANCE)
      }), { numRuns: 2000 })
  })

  it('are exact, and the shortest exact pair, for whole tiers, scales in hundredths and periods in seconds or 1000/k ms', () => {
    const nicePeriod = fc.oneof(
      fc.integer({ min: 1, max: 86_400 }).map(s => s * 1000),
      fc.constantFrom(1, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500),
    )
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 1000 }), nicePeriod, fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 1, max: 10 }), fc.integer({ min: 1, max: 100 }),
      (max, perMs, burst, tier, hundredths) => {
        const p = buildPolicy({ name: 'p', max, perMs, burst }, tier * (hundredths / 100), routeScope('GET /x'))
        const q = BigInt(p.advertisedQuota)
        const w = BigInt(p.advertisedWindowS)
        // q / w = max · tier · hundredths / 100 / perMs per ms, exactly
        const rateNumerator = BigInt(max * tier * hundredths) * 1000n
        const rateDenominator = BigInt(100 * perMs)
        expect(q * rateDenominator).toBe(rateNumerator * w)
        // q ≥ burst' exactly, and no shorter window has a whole q that holds the burst
        expect(q * 100n).toBeGreaterThanOrEqual(BigInt(burst * tier * hundredths))
        for (let shorter = w - 1n; shorter >= 1n && shorter > w - 200n; shorter--) {
          const exact = (rateNumerator * shorter) % rateDenominator === 0n
          const holds = (rateNumerator * shorter) / rateDenominator * 100n >= BigInt(burst * tier * hundredths)
          expect(exact && holds).toBe(false)
        }
      }), { numRuns: 2000 })
  })
})
