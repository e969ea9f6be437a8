/**
 * The reference cases every implementation of the decision is held to, and the random
 * sequences they are compared on. Limit: burst 5, one per second; t in ms.
 */
import fc from 'fast-check'
import { ratio, type ModelLimit } from './model.js'

export const REFERENCE_LIMIT: ModelLimit = { max: 1, perMs: 1000, burst: 5 }

export interface ReferenceStep {
  tMs: number
  cost: number
  tooLarge?: true
  allowed?: boolean
  remaining?: number
  retryAfterMs?: number
}

export const REFERENCE_STEPS: readonly ReferenceStep[] = [
  { tMs: 0, cost: 6, tooLarge: true },
  { tMs: 0, cost: 1, allowed: true, remaining: 4 },
  { tMs: 0, cost: 1, allowed: true, remaining: 3 },
  { tMs: 0, cost: 1, allowed: true, remaining: 2 },
  { tMs: 0, cost: 1, allowed: true, remaining: 1 },
  { tMs: 0, cost: 1, allowed: true, remaining: 0 },
  { tMs: 0, cost: 1, allowed: false, remaining: 0, retryAfterMs: 1000 },
  { tMs: 3000, cost: 1, allowed: true, remaining: 2 },
  { tMs: 3100, cost: 1, allowed: true, remaining: 1 },
  { tMs: 4000, cost: 1, allowed: true, remaining: 1 },
  { tMs: 8000, cost: 1, allowed: true, remaining: 4 },
  { tMs: 9500, cost: 1, allowed: true, remaining: 4 },
  { tMs: 9500, cost: 2, allowed: true, remaining: 2 },
  { tMs: 9500, cost: 5, allowed: false, remaining: 2, retryAfterMs: 3000 },
]

/** A realistic epoch in µs, so the big integers Redis and Lua handle are exercised. */
export const EPOCH_US = 1_790_000_000_000_000

export interface RandomStep {
  dtUs: number
  cost: number
  who: number
}

export interface RandomCase {
  limits: ModelLimit[]
  steps: RandomStep[]
}

const multiplier = fc.constantFrom(1, 5, 2.5, 0.5, 1.1).map(m => ratio(m))

const limit: fc.Arbitrary<ModelLimit> = fc.record({
  max: fc.integer({ min: 1, max: 20 }),
  perMs: fc.constantFrom(100, 1000, 7000, 60_000, 3_600_000),
  burst: fc.integer({ min: 1, max: 25 }),
  multiplier,
})

const step: fc.Arbitrary<RandomStep> = fc.record({
  // mostly bursts (dt 0), sometimes small gaps, sometimes long idle
  dtUs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 200_000 }), fc.integer({ min: 0, max: 5_000_000 })),
  cost: fc.oneof(fc.integer({ min: 1, max: 6 }), fc.constantFrom(0.5, 1.5, 2.25, 10)),
  who: fc.integer({ min: 0, max: 1 }),
})

export const randomCase: fc.Arbitrary<RandomCase> = fc.record({
  limits: fc.array(limit, { minLength: 1, maxLength: 3 }),
  steps: fc.array(step, { minLength: 1, maxLength: 40 }),
})

/** Per-limit keys of one identity in one case. */
export const keysFor = (prefix: string, who: number, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `${prefix}:{id${who}}:${i}`)
