import { describe, expect, it } from 'vitest'
import { incrementUs, maxCost, toBucket } from '../../lib/gcra/math.js'
import { normaliseLimit, type Limit } from '../../lib/limits/limit.js'
import { buildPolicy, buildSet, exceedsCapacity, GLOBAL_SCOPE, incrementsFor, namedScope, routeScope } from '../../lib/limits/policy.js'

const limit = (spec: Parameters<typeof normaliseLimit>[0]): Limit => normaliseLimit(spec) as Limit

describe('policies', () => {
  it('turn a limit and a tier multiplier into the GCRA bucket, quota, burst and window', () => {
    const p = buildPolicy(limit({ max: 10, per: '1 minute', burst: 4 }), 2.5, routeScope('POST /x'))
    expect({ intervalUs: p.intervalUs, capacityUs: p.capacityUs }).toEqual(toBucket(10, 60_000, 4, 2.5))
    expect(p.intervalUs).toBe(2_400_000)
    expect(p.capacityUs).toBe(24_000_000)
    expect([p.name, p.quota, p.burst, p.windowMs]).toEqual(['10/minute burst 4', 25, 10, 60_000])
  })

  it('key their buckets by scope and name: the same limit in two scopes is two buckets, in one scope one', () => {
    const l = limit('10/minute')
    const a = buildPolicy(l, 1, routeScope('POST /a'))
    expect(buildPolicy(l, 5, routeScope('POST /a')).id).toBe(a.id)
    expect(buildPolicy(l, 1, routeScope('POST /b')).id).not.toBe(a.id)
    expect(buildPolicy(l, 1, GLOBAL_SCOPE).id).not.toBe(a.id)
    expect(buildPolicy(limit({ max: 10, per: 60_000, name: 'other' }), 1, routeScope('POST /a')).id).not.toBe(a.id)
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{12}$/)
  })

  it('never let a named scope, a route scope and the global scope collide', () => {
    expect(new Set([namedScope('global'), routeScope('global'), GLOBAL_SCOPE]).size).toBe(3)
  })
})

describe('policy sets', () => {
  const perMinute = buildPolicy(limit('10/minute'), 1, routeScope('POST /p'))
  const perDay = buildPolicy(limit({ max: 100, per: '1 day', burst: 3 }), 1, GLOBAL_SCOPE)

  it('carry capacities, increments of 1 and of the fixed cost, and the smallest largest cost', () => {
    const set = buildSet([perMinute, perDay], 2)
    expect(set.capacitiesUs).toEqual([perMinute.capacityUs, perDay.capacityUs])
    expect(set.unitIncrements).toEqual([incrementUs(1, perMinute.intervalUs), incrementUs(1, perDay.intervalUs)])
    expect(set.fixedIncrements).toEqual(incrementsFor([perMinute, perDay], 2))
    expect(set.maxCost).toBe(Math.min(maxCost(perMinute), maxCost(perDay)))
    expect(set.maxCost).toBe(3)
    expect(buildSet([perMinute], undefined).fixedIncrements).toBeUndefined()
  })

  it('write the RateLimit-Policy field once, one item per policy', () => {
    expect(buildSet([perMinute, perDay], undefined).policyField).toBe('"10/minute";q=10;w=60, "100/day burst 3";q=3;w=2592')
  })

  it('get a new id each, so the deny cache never mixes two sets', () => {
    expect(buildSet([perMinute], 1).id).not.toBe(buildSet([perMinute], 1).id)
  })

  it('tell a cost that can never fit (413) from one that fits a full bucket', () => {
    const set = buildSet([perMinute, perDay], undefined)
    expect(exceedsCapacity(set, incrementsFor(set.policies, 3))).toBe(false)
    expect(exceedsCapacity(set, incrementsFor(set.policies, 4))).toBe(true)
    expect(exceedsCapacity(set, incrementsFor(set.policies, 3.5))).toBe(true)
  })
})
