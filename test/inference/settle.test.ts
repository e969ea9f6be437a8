/**
 * Estimate, then settle: the store operation against the reference model (memory store
 * and the Lua script on a fixed clock), and `reply.rateLimit.settle` / the `settle` route
 * option over HTTP on both stores.
 */
import fc from 'fast-check'
import type { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { encode } from '../../lib/stores/coalesce.js'
import { FST_GCRA_INVALID_SETTLE } from '../../lib/index.js'
import { incrementUs, toBucket } from '../../lib/gcra/math.js'
import { SETTLE_LUA, SETTLE_LUA_FIXED_CLOCK } from '../../lib/gcra/lua.js'
import { MemoryStore } from '../../lib/stores/memory.js'
import type { StoreReply } from '../../lib/stores/contract.js'
import { appWith, ok, storeCases } from '../helpers/app.js'
import { EPOCH_US, keysFor } from '../helpers/cases.js'
import { GcraModel, ratio, type ModelLimit } from '../helpers/model.js'
import { hasRedis, randomPrefix, redisClient } from '../helpers/redis.js'
import { libStep } from '../helpers/subjects.js'

const toNumber = (m: ModelLimit['multiplier']): number => (m === undefined ? 1 : Number(m[0]) / Number(m[1]))
const bucketsOf = (limits: readonly ModelLimit[]) => limits.map(l => toBucket(l.max, l.perMs, l.burst, toNumber(l.multiplier)))

/** A store that decides and settles; the Lua one reads its clock from the last ARGV. */
interface SettlingStore {
  decide(keys: readonly string[], caps: readonly number[], incs: readonly number[], charge: boolean): Promise<StoreReply> | StoreReply
  adjust(keys: readonly string[], caps: readonly number[], deltas: readonly number[]): Promise<StoreReply> | StoreReply
}

function luaStore (redis: Redis, clock: () => number, decideLua: string): SettlingStore {
  return {
    async decide (keys, caps, incs, charge) {
      // one decision in the call
      const { argv } = encode([{ keys, capacitiesUs: caps, incrementsUs: incs, charge, resolve: () => {}, reject: () => {} }])
      const reply = await redis.eval(decideLua, keys.length, ...keys, ...argv, clock()) as number[]
      return { allowed: reply[1] === 1, nowUs: reply[0]!, tatsUs: reply.slice(2) }
    },
    async adjust (keys, caps, deltas) {
      const args: Array<string | number> = []
      caps.forEach((c, i) => args.push(c, deltas[i]!))
      // no slack: no route holds charges past a capacity here
      args.push(0)
      const reply = await redis.eval(SETTLE_LUA_FIXED_CLOCK, keys.length, ...keys, ...args, clock()) as number[]
      return { allowed: true, nowUs: reply[1]!, tatsUs: reply.slice(2) }
    },
  }
}

interface SettleStep { dtUs: number, who: number, cost: number, actual: number | undefined }

const settleCase = fc.record({
  limits: fc.array(fc.record({
    max: fc.integer({ min: 1, max: 20 }),
    perMs: fc.constantFrom(1000, 7000, 60_000),
    burst: fc.integer({ min: 1, max: 25 }),
    multiplier: fc.constantFrom(1, 2.5, 0.5).map(m => ratio(m)),
  }), { minLength: 1, maxLength: 3 }),
  steps: fc.array(fc.record({
    dtUs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3_000_000 })),
    who: fc.integer({ min: 0, max: 1 }),
    cost: fc.oneof(fc.integer({ min: 1, max: 6 }), fc.constantFrom(0.5, 2.25)),
    // the actual cost: none (no settle), a refund, all of it back (0), or an overrun
    actual: fc.option(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 12 }), fc.constantFrom(0.5, 30)), { nil: undefined }),
  }), { minLength: 1, maxLength: 30 }),
})

/** Run a case through a store and the model; every decision and every settle must agree exactly. */
async function compare (store: SettlingStore, prefix: string, c: { limits: ModelLimit[], steps: SettleStep[] }, clock: { now: number }): Promise<void> {
  const model = new GcraModel()
  const buckets = bucketsOf(c.limits)
  for (const step of c.steps) {
    clock.now += step.dtUs
    const keys = keysFor(prefix, step.who, c.limits.length)
    const expected = model.request(keys, c.limits, step.cost, clock.now)
    const got = await libStep(store as never, keys, c.limits, step.cost)
    expect(got.allowed).toBe(expected.allowed)
    if (expected.tooLarge || !expected.allowed || step.actual === undefined) continue
    expect(got.tatsUs).toEqual(expected.tatsUs)
    const charged = buckets.map(b => incrementUs(step.cost, b.intervalUs))
    const deltas = buckets.map((b, i) => (step.actual === 0 ? 0 : incrementUs(step.actual!, b.intervalUs)) - charged[i]!)
    const settled = await store.adjust(keys, buckets.map(b => b.capacityUs), deltas)
    expect(settled.tatsUs).toEqual(model.settle(keys, c.limits, step.cost, step.actual, clock.now))
  }
}

describe('settling a charge, against the reference model', () => {
  it('memory store: 300 random sequences of charges, refunds and overruns agree exactly', async () => {
    await fc.assert(fc.asyncProperty(settleCase, async (c) => {
      const clock = { now: EPOCH_US }
      await compare(new MemoryStore({ clock: () => clock.now }), 'm', c, clock)
    }), { numRuns: 300 })
  })

  it('charging an estimate and settling at once equals charging the actual cost', () => {
    const clock = { now: EPOCH_US }
    const a = new MemoryStore({ clock: () => clock.now })
    const b = new MemoryStore({ clock: () => clock.now })
    const bucket = toBucket(7, 60_000, 7, 1)
    for (const [estimate, actual] of [[5, 2], [3, 3], [1, 6], [4, 0.5]] as const) {
      expect(a.decide(['k'], [bucket.capacityUs], [incrementUs(estimate, bucket.intervalUs)], true).allowed).toBe(true)
      const settled = a.adjust(['k'], [bucket.capacityUs], [incrementUs(actual, bucket.intervalUs) - incrementUs(estimate, bucket.intervalUs)])
      const direct = b.decide(['k'], [bucket.capacityUs], [incrementUs(actual, bucket.intervalUs)], true)
      expect(settled.tatsUs).toEqual(direct.tatsUs)
      clock.now += 70_000_000
    }
  })

  it('an overrun leaves at most an empty bucket; a refund past full leaves a full one', () => {
    const clock = { now: EPOCH_US }
    const store = new MemoryStore({ clock: () => clock.now })
    const { intervalUs: T, capacityUs: D } = toBucket(10, 10_000, 10, 1)
    store.decide(['k'], [D], [8 * T], true)
    expect(store.adjust(['k'], [D], [30 * T]).tatsUs).toEqual([clock.now + D])
    expect(store.adjust(['k'], [D], [-50 * T]).tatsUs).toEqual([clock.now])
    expect(store.size).toBe(0)
  })

  it.runIf(hasRedis)('the Lua script: 60 random sequences agree exactly (fixed clock)', async () => {
    const redis = redisClient()
    const { GCRA_LUA_FIXED_CLOCK } = await import('../../lib/gcra/lua.js')
    await fc.assert(fc.asyncProperty(settleCase, async (c) => {
      const clock = { now: EPOCH_US }
      await compare(luaStore(redis, () => clock.now, GCRA_LUA_FIXED_CLOCK), randomPrefix(), c, clock)
    }), { numRuns: 60 })
  })

  it.runIf(hasRedis)('the production script sets the TTL to the time until full, and deletes a full bucket', async () => {
    const redis = redisClient()
    const key = `${randomPrefix()}:{a}:0`
    const { intervalUs: T, capacityUs: D } = toBucket(10, 10_000, 10, 1)
    await redis.set(key, '0')
    const [, now, tat] = await redis.eval(SETTLE_LUA, 1, key, D, 4 * T, 0) as number[]
    expect(tat).toBe(now! + 4 * T)
    const ttl = await redis.pttl(key)
    expect(ttl).toBeGreaterThan(4 * T / 1000 - 50)
    expect(ttl).toBeLessThanOrEqual(Math.ceil(4 * T / 1000))
    await redis.eval(SETTLE_LUA, 1, key, D, -10 * T, 0)
    expect(await redis.exists(key)).toBe(0)
  })
})

describe.each(storeCases)('reply.rateLimit.settle over HTTP ($name)', (store) => {
  const estimate = (request: { body: unknown }) => (request.body as { max: number }).max

  it('refunds what the handler did not use, so the next estimate fits', async () => {
    const app = await appWith(store)
    const settled: unknown[] = []
    app.post('/gen', { config: { rateLimit: { limits: ['100/minute'], cost: estimate } } }, async (request, reply) => {
      expect(reply.rateLimit!.charged).toBe(60)
      const before = request.rateLimit!.remaining
      settled.push(await reply.rateLimit!.settle(10))
      // request.rateLimit follows the settle
      return { before, after: request.rateLimit!.remaining, cost: request.rateLimit!.cost }
    })
    const first = await app.inject({ method: 'POST', url: '/gen', payload: { max: 60 } })
    expect(first.json()).toMatchObject({ before: 40, cost: 10 })
    expect(first.json().after).toBeGreaterThanOrEqual(90)
    expect((settled[0] as { remaining: number }).remaining).toBeGreaterThanOrEqual(90)
    // without the refund 40 units are left, and a 60-unit estimate would be refused
    expect((await app.inject({ method: 'POST', url: '/gen', payload: { max: 60 } })).statusCode).toBe(200)
  })

  it('charges an overrun, and settle(0) gives everything back', async () => {
    const app = await appWith(store)
    const actual: number[] = [50, 0]
    app.post('/gen', { config: { rateLimit: { limits: ['100/minute'], cost: estimate } } }, async (_request, reply) => {
      await reply.rateLimit!.settle(actual.shift() ?? 1)
      return ok()
    })
    expect((await app.inject({ method: 'POST', url: '/gen', payload: { max: 10 } })).statusCode).toBe(200)
    // 50 used: a 60-unit estimate no longer fits
    const refused = await app.inject({ method: 'POST', url: '/gen', payload: { max: 60 } })
    expect(refused.statusCode).toBe(429)
    expect((await app.inject({ method: 'POST', url: '/gen', payload: { max: 40 } })).statusCode).toBe(200)
    // that one was settled at 0: 50 are still available
    expect((await app.inject({ method: 'POST', url: '/gen', payload: { max: 50 } })).statusCode).toBe(200)
  })

  it('settles every limit of the request (route, global) atomically', async () => {
    const app = await appWith(store, { global: ['1000/hour'] })
    app.post('/gen', { config: { rateLimit: { limits: ['100/minute'], cost: estimate } } }, async (_request, reply) => {
      const info = await reply.rateLimit!.settle(5)
      return info!.policies.map(p => [p.name, p.remaining])
    })
    const res = await app.inject({ method: 'POST', url: '/gen', payload: { max: 80 } })
    expect(res.json()).toEqual([['100/minute', 95], ['global 1000/hour', 995]])
  })

  it('the settle route option runs after the response and reads what the handler left', async () => {
    const app = await appWith(store)
    const done: Array<() => void> = []
    const settledOnce = new Promise<void>(resolve => done.push(resolve))
    app.post('/gen', {
      config: { rateLimit: { limits: ['100/minute'], cost: estimate, settle: (_request, reply) => Number(reply.getHeader('x-tokens')) } },
      onResponse: (_request, _reply, next) => { next(); setTimeout(() => done.shift()?.(), 50) },
    }, async (_request, reply) => {
      reply.header('x-tokens', 7)
      return ok()
    })
    expect((await app.inject({ method: 'POST', url: '/gen', payload: { max: 90 } })).statusCode).toBe(200)
    await settledOnce
    const peek = await app.inject({ method: 'POST', url: '/gen', payload: { max: 90 } })
    expect(peek.statusCode).toBe(200)
    expect(peek.headers.ratelimit).toMatch(/^"100\/minute";r=[34];t=/)
  })

  it('refuses a bad actual cost or a second settle at once, and is null on routes that are not limited', async () => {
    const app = await appWith(store)
    const errors: unknown[] = []
    app.post('/gen', { config: { rateLimit: { limits: ['100/minute'], cost: estimate } } }, async (_request, reply) => {
      for (const bad of [-1, Number.NaN, Infinity, '3']) {
        try { void reply.rateLimit!.settle(bad as number) } catch (error) { errors.push(error) }
      }
      await reply.rateLimit!.settle(1)
      try { void reply.rateLimit!.settle(1) } catch (error) { errors.push(error) }
      return { settled: reply.rateLimit!.settled }
    })
    app.get('/free', { config: { rateLimit: false } }, async (_request, reply) => ({ settlement: reply.rateLimit }))
    expect((await app.inject({ method: 'POST', url: '/gen', payload: { max: 5 } })).json()).toEqual({ settled: true })
    expect(errors).toHaveLength(5)
    for (const error of errors) expect(error).toBeInstanceOf(FST_GCRA_INVALID_SETTLE)
    expect((await app.inject('/free')).json()).toEqual({ settlement: null })
  })
})

describe.runIf(hasRedis)('settle and the local deny cache', () => {
  it('a refund is not hidden by a refusal remembered before it', async () => {
    const [store] = storeCases.filter(s => s.name === 'redis')
    const app = await appWith(store!)
    let release!: () => void
    const held = new Promise<void>(resolve => { release = resolve })
    // a fixed estimate: charged in onRequest, where the deny cache answers repeat refusals
    app.get('/gen', { config: { rateLimit: { limits: ['100/minute'], cost: 60 } } }, async (request, reply) => {
      if (request.headers['x-hold'] === '1') await held
      await reply.rateLimit!.settle(10)
      return ok()
    })
    const first = app.inject({ url: '/gen', headers: { 'x-hold': '1' } })
    await new Promise(resolve => setTimeout(resolve, 100))
    // 40 left: refused, and remembered by the deny cache
    expect((await app.inject('/gen')).statusCode).toBe(429)
    release()
    expect((await first).statusCode).toBe(200)
    // 90 left after the refund: Redis admits it, so the deny cache must not refuse it
    expect((await app.inject('/gen')).statusCode).toBe(200)
  })
})

describe.runIf(hasRedis)('refunds reach the deny cache of every instance', () => {
  it('a refund on one instance clears a refusal another instance remembered', async () => {
    const prefix = randomPrefix()
    const [store] = storeCases.filter(s => s.name === 'redis')
    const apps = await Promise.all([0, 1].map(() => appWith(store!, { prefix })))
    let release!: () => void
    const held = new Promise<void>(resolve => { release = resolve })
    for (const app of apps) {
      app.get('/gen', { config: { rateLimit: { limits: ['10/minute'], cost: 10 } } }, async (request, reply) => {
        if (request.headers['x-hold'] === '1') await held
        await reply.rateLimit!.settle(0)
        return ok()
      })
      await app.ready()
    }
    const [a, b] = apps as [typeof apps[0], typeof apps[0]]
    const first = a.inject({ url: '/gen', headers: { 'x-hold': '1' } })
    await new Promise(resolve => setTimeout(resolve, 100))
    // b is refused, and remembers it
    expect((await b.inject('/gen')).statusCode).toBe(429)
    expect((await b.inject('/gen')).statusCode).toBe(429)
    expect(b.rateLimiter.stats().denyCacheHits).toBe(1)
    release()
    expect((await first).statusCode).toBe(200)
    // a refunded everything: b hears of it and asks Redis again
    const deadline = Date.now() + 1000
    let status = 429
    while (status === 429 && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 20))
      status = (await b.inject('/gen')).statusCode
    }
    expect(status).toBe(200)
    expect(b.rateLimiter.stats().denyCacheHits).toBe(1)
  })
})
