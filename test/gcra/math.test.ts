import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decide, incrementUs, maxCost, nextUnitUs, remainingUnits, startTat, toBucket, waitUs } from '../../lib/gcra/math.js'
import { MemoryStore } from '../../lib/stores/memory.js'
import { EPOCH_US, keysFor, randomCase, REFERENCE_LIMIT, REFERENCE_STEPS } from '../helpers/cases.js'
import { GcraModel } from '../helpers/model.js'
import { comparable, libStep } from '../helpers/subjects.js'

describe('reference model', () => {
  it('gives the reference cases of the contract', () => {
    const model = new GcraModel()
    for (const step of REFERENCE_STEPS) {
      const r = model.request(['k'], [REFERENCE_LIMIT], step.cost, EPOCH_US + step.tMs * 1000)
      if (step.tooLarge) {
        expect(r.tooLarge, `t=${step.tMs} cost ${step.cost}`).toBe(true)
        continue
      }
      expect({ allowed: r.allowed, remaining: r.remaining[0] }, `t=${step.tMs} cost ${step.cost}`).toEqual({ allowed: step.allowed, remaining: step.remaining })
      expect(r.retryAfterUs).toBe((step.retryAfterMs ?? 0) * 1000)
    }
  })
})

describe('pure decision', () => {
  it('computes T and D in whole µs without float drift', () => {
    expect(toBucket(10, 60_000, 10, 1)).toEqual({ intervalUs: 6_000_000, capacityUs: 60_000_000 })
    // 60e6 / (10 · 1.1) is 5454545.45…: rounded up, never down
    expect(toBucket(10, 60_000, 10, 1.1).intervalUs).toBe(5_454_546)
    // 3 · 1.1 · 2 lands a few ulps off 6.6; 100 per second is exactly 10 000 µs
    expect(toBucket(100, 1000, 20, 1)).toEqual({ intervalUs: 10_000, capacityUs: 200_000 })
    expect(toBucket(7, 60_000, 7, 1).intervalUs).toBe(8_571_429)
    expect(incrementUs(0.1, 10)).toBe(1)
    expect(incrementUs(3, 3_333_334)).toBe(10_000_002)
  })

  it('treats non-numbers as absent and TATs beyond now + D as an empty bucket', () => {
    expect(startTat(undefined, 100, 50)).toBe(100)
    expect(startTat(Number.NaN, 100, 50)).toBe(100)
    expect(startTat(Infinity, 100, 50)).toBe(100)
    expect(startTat(90, 100, 50)).toBe(100)
    expect(startTat(120, 100, 50)).toBe(120)
    expect(startTat(1e9, 100, 50)).toBe(150)
  })

  it('writes nothing and keeps every TAT when one bucket refuses', () => {
    const tats: number[] = []
    const allowed = decide([undefined, 1_000], [100, 100], [50, 60], 950, tats)
    expect(allowed).toBe(false)
    expect(tats).toEqual([950, 1_000])
  })

  it('reports the wait, the next unit and the largest cost', () => {
    const b = { intervalUs: 1_000_000, capacityUs: 5_000_000 }
    expect(remainingUnits(5_000_000, 0, b)).toBe(0)
    expect(waitUs(5_000_000, 0, 1_000_000, b)).toBe(1_000_000)
    expect(nextUnitUs(5_000_000, 0, b)).toBe(1_000_000)
    expect(nextUnitUs(4_500_000, 0, b)).toBe(500_000)
    expect(nextUnitUs(0, 10, b)).toBe(0)
    expect(maxCost(b)).toBe(5)
  })
})

describe('memory store against the model', () => {
  it('matches the reference cases exactly', async () => {
    let now = EPOCH_US
    const store = new MemoryStore({ clock: () => now })
    const model = new GcraModel()
    for (const step of REFERENCE_STEPS) {
      now = EPOCH_US + step.tMs * 1000
      const got = await libStep(store, ['k'], [REFERENCE_LIMIT], step.cost)
      const want = model.request(['k'], [REFERENCE_LIMIT], step.cost, now)
      expect(comparable(got), `t=${step.tMs} cost ${step.cost}`).toEqual(comparable(want))
      if (!step.tooLarge) expect(got.retryAfterUs).toBe((step.retryAfterMs ?? 0) * 1000)
    }
  })

  it('matches the model on random sequences of costs, gaps, tiers and stacked limits', async () => {
    await fc.assert(fc.asyncProperty(randomCase, async ({ limits, steps }) => {
      let now = EPOCH_US
      const store = new MemoryStore({ clock: () => now })
      const model = new GcraModel()
      for (const step of steps) {
        now += step.dtUs
        const keys = keysFor('m', step.who, limits.length)
        const got = await libStep(store, keys, limits, step.cost)
        const want = model.request(keys, limits, step.cost, now)
        expect(comparable(got)).toEqual(comparable(want))
      }
    }), { numRuns: 400, seed: 20261122 })
  })

  it('checks without charging when asked to', async () => {
    let now = EPOCH_US
    const store = new MemoryStore({ clock: () => now })
    for (let i = 0; i < 5; i++) await libStep(store, ['k'], [REFERENCE_LIMIT], 1, false)
    const charged = await libStep(store, ['k'], [REFERENCE_LIMIT], 5)
    expect(charged.allowed).toBe(true)
    now += 10
    expect((await libStep(store, ['k'], [REFERENCE_LIMIT], 1, false)).allowed).toBe(false)
  })
})
