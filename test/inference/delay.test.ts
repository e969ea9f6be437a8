/**
 * `delay` on the memory store against the reference model, with fake time: who is served
 * at once, who is held and until when to the ms, who is refused and with what Retry-After.
 */
import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { newApp } from '../helpers/app.js'
import { GcraModel, type ModelLimit } from '../helpers/model.js'

const START_MS = 1_700_000_000_000

afterEach(() => {
  vi.useRealTimers()
})

interface Step {
  advanceMs: number
  /** The costs of the requests sent at this instant, in order (routes /c1 and /c2 share one scope). */
  costs: Array<1 | 2>
}

async function delayedApp (limit: ModelLimit, delayMs: number): Promise<FastifyInstance> {
  const app = newApp()
  await app.register((await import('../../lib/index.js')).default, { store: 'memory', maxDelayed: 10_000 })
  const spec = { max: limit.max, per: limit.perMs, burst: limit.burst }
  for (const cost of [1, 2]) {
    app.get(`/c${cost}`, { config: { rateLimit: { limits: [spec], cost, scope: 'shaped', delay: delayMs } } }, async request => ({
      servedAtMs: Date.now(),
      delayedMs: request.rateLimit!.delayedMs,
    }))
  }
  await app.ready()
  return app
}

interface Sent {
  response: LightMyRequestResponse | undefined
  sentAtMs: number
  cost: number
  allowed: boolean
  holdMs: number
  retryAfterS: number
}

const limits = fc.record({
  max: fc.integer({ min: 1, max: 20 }),
  perMs: fc.constantFrom(200, 250, 1000, 1500, 10_000, 60_000),
  burst: fc.integer({ min: 2, max: 10 }),
})
/** A delay in ms: any, or a whole number of intervals T (±1 ms), where admissions meet the bound exactly. */
const delays = fc.oneof(
  fc.record({ any: fc.integer({ min: 1, max: 5000 }) }),
  fc.record({ intervals: fc.integer({ min: 1, max: 8 }), offMs: fc.constantFrom(-1, 0, 1) }),
)
const delayOf = (spec: { any: number } | { intervals: number, offMs: number }, limit: ModelLimit): number =>
  'any' in spec ? spec.any : Math.max(1, Math.round(spec.intervals * limit.perMs / limit.max) + spec.offMs)

const steps = fc.array(fc.record({
  advanceMs: fc.integer({ min: 0, max: 3000 }),
  costs: fc.array(fc.constantFrom<1 | 2>(1, 2), { minLength: 1, maxLength: 6 }),
}), { minLength: 1, maxLength: 6 })

describe('delay on the memory store, against the reference model', () => {
  it('holds exactly the requests the model admits past D, each until its slot, and refuses the rest at once', async () => {
    await fc.assert(fc.asyncProperty(limits, delays, steps, async (limit, delaySpec, plan: Step[]) => {
      const delayMs = delayOf(delaySpec, limit)
      vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'] })
      vi.setSystemTime(START_MS)
      const app = await delayedApp(limit, delayMs)
      const model = new GcraModel()
      const sent: Sent[] = []
      try {
        for (const step of plan) {
          await vi.advanceTimersByTimeAsync(step.advanceMs)
          for (const cost of step.costs) {
            const nowMs = Date.now()
            const expected = model.request(['k'], [limit], cost, nowMs * 1000, true, delayMs * 1000)
            const one: Sent = {
              response: undefined,
              sentAtMs: nowMs,
              cost,
              allowed: expected.allowed && !expected.tooLarge,
              holdMs: Math.ceil(expected.holdUs / 1000),
              retryAfterS: Math.max(1, Math.ceil(expected.retryAfterUs / 1e6)),
            }
            sent.push(one)
            void app.inject({ url: `/c${cost}` }).then((r) => { one.response = r })
            // the decision and every answer that needs no wait, without moving the clock
            await vi.advanceTimersByTimeAsync(0)
            if (expected.tooLarge) {
              expect(one.response?.statusCode).toBe(413)
            } else if (!one.allowed) {
              expect(one.response?.statusCode).toBe(429)
              expect(one.response?.headers['retry-after']).toBe(String(one.retryAfterS))
            } else if (one.holdMs === 0) {
              expect(one.response?.statusCode).toBe(200)
            } else {
              // held: not answered before its slot
              expect(one.response).toBeUndefined()
            }
          }
        }
        await vi.advanceTimersByTimeAsync(delayMs + 10)
        for (const one of sent) {
          if (!one.allowed) continue
          expect(one.response?.statusCode).toBe(200)
          const body = one.response!.json<{ servedAtMs: number, delayedMs: number }>()
          expect(body.delayedMs).toBe(one.holdMs)
          // served at its slot to the ms: never before it, never later
          expect(body.servedAtMs - one.sentAtMs).toBe(one.holdMs)
          expect(one.holdMs).toBeLessThanOrEqual(delayMs)
        }
      } finally {
        vi.useRealTimers()
        await app.close()
      }
    }), { numRuns: 60 })
  })

  it('serves held requests in the order of their slots, and a refused one is charged nothing', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'] })
    vi.setSystemTime(START_MS)
    // T = D = 200 ms; a delay of 1 s admits 5 more at once, held 200, 400, ..., 1000 ms
    const app = await delayedApp({ max: 5, perMs: 1000, burst: 1 }, 1000)
    const order: number[] = []
    const answers = Array.from({ length: 8 }, (_, i) => app.inject({ url: '/c1' }).then((r) => { order.push(i); return r }))
    await vi.advanceTimersByTimeAsync(0)
    // answered at once: the first (admitted) and the two beyond the delay (refused)
    expect([...order].sort()).toEqual([0, 6, 7])
    await vi.advanceTimersByTimeAsync(1000)
    const done = await Promise.all(answers)
    expect(done.map(r => r.statusCode)).toEqual([200, 200, 200, 200, 200, 200, 429, 429])
    expect(done.slice(0, 6).map(r => r.json<{ delayedMs: number }>().delayedMs)).toEqual([0, 200, 400, 600, 800, 1000])
    expect(order.slice(3)).toEqual([1, 2, 3, 4, 5])
    // the two refusals were not charged: the TAT is start + 1 200 ms (six charges of 200),
    // now is start + 1 000 ms; a next request ends at 1 400 ms, 200 ms past D: held 200 ms
    // (had the refusals been charged, 600 ms)
    const next = app.inject({ url: '/c1' })
    await vi.advanceTimersByTimeAsync(200)
    const held = await next
    expect(held.statusCode).toBe(200)
    expect(held.json<{ delayedMs: number }>().delayedMs).toBe(200)
    vi.useRealTimers()
  })
})
