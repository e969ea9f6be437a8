/**
 * Concurrency limits: slots per caller (and per tier) and per route, taken in onRequest,
 * always given back (response, abort, timeout, thrown handler), leased in Redis.
 */
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import gcra from '../../lib/index.js'
import { RedisStore } from '../../lib/stores/redis.js'
import { appWith, newApp, ok, storeCases, type StoreCase } from '../helpers/app.js'
import { hasRedis, randomPrefix, redisClient, redisUrl } from '../helpers/redis.js'

/** A gate handlers wait on: `open()` lets every waiting handler finish. */
function gate (): { wait: () => Promise<void>, open: () => void } {
  let open!: () => void
  let promise = new Promise<void>(resolve => { open = resolve })
  return {
    wait: () => promise,
    open: () => {
      open()
      promise = new Promise<void>(resolve => { open = resolve })
    },
  }
}

const tick = (ms = 30): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Wait until `check` holds (bounded): slot releases to Redis are not awaited by the response. */
async function eventually (check: () => boolean | Promise<boolean>, ms = 2000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not reached in time')
    await tick(10)
  }
}

const from = (ip: string, url = '/gen', headers: Record<string, string> = {}) => ({ url, remoteAddress: ip, headers })

describe.each(storeCases)('concurrency limits ($name)', (store: StoreCase) => {
  it('caps a caller\'s requests in flight: 429, Retry-After 1, draft-10 concurrent-requests fields', async () => {
    const app = await appWith(store)
    const g = gate()
    app.get('/gen', { config: { rateLimit: { concurrency: 2 } } }, async () => { await g.wait(); return ok() })
    const held = [app.inject(from('10.0.0.1')), app.inject(from('10.0.0.1'))]
    await tick()
    const refused = await app.inject(from('10.0.0.1'))
    expect(refused.statusCode).toBe(429)
    expect(refused.headers['retry-after']).toBe('1')
    expect(refused.headers['ratelimit-policy']).toBe('"concurrency";q=2;qu="concurrent-requests"')
    expect(refused.headers.ratelimit).toBe('"concurrency";r=0')
    expect(refused.json()).toMatchObject({ status: 429, 'violated-policies': ['concurrency'] })
    expect(refused.json().detail).toContain('2 requests in flight at once')
    // another caller has slots of its own
    const other = app.inject(from('10.0.0.2'))
    await tick()
    g.open()
    for (const res of await Promise.all([...held, other])) expect(res.statusCode).toBe(200)
    // the slots came back with the responses
    await eventually(() => app.rateLimiter.stats().slotsHeld === 0)
    const again = [app.inject(from('10.0.0.1')), app.inject(from('10.0.0.1'))]
    await tick()
    g.open()
    const both = await Promise.all(again)
    expect(both.map(r => r.statusCode)).toEqual([200, 200])
    expect(both.map(r => r.headers.ratelimit).sort()).toEqual(['"concurrency";r=0', '"concurrency";r=1'])
  })

  it('caps the route for everyone with 503, and gives the caller\'s slot back when the route refuses', async () => {
    const app = await appWith(store)
    const g = gate()
    app.get('/gen', { config: { rateLimit: { concurrency: { perCaller: 1, route: 2 } } } }, async () => { await g.wait(); return ok() })
    const held = [app.inject(from('10.0.0.1')), app.inject(from('10.0.0.2'))]
    await tick()
    const busy = await app.inject(from('10.0.0.3'))
    expect(busy.statusCode).toBe(503)
    expect(busy.headers['retry-after']).toBe('1')
    expect(busy.json().detail).toContain('2 at once')
    g.open()
    await Promise.all(held)
    await eventually(() => app.rateLimiter.stats().slotsHeld === 0)
    // 10.0.0.3's own slot was given back with the 503: it is admitted now, not refused with 429
    const next = app.inject(from('10.0.0.3'))
    await tick()
    g.open()
    expect((await next).statusCode).toBe(200)
  })

  it('does not charge the rate limits of a request it refuses', async () => {
    const app = await appWith(store)
    const g = gate()
    app.get('/gen', { config: { rateLimit: { limits: ['5/minute'], concurrency: 1 } } }, async () => { await g.wait(); return ok() })
    const first = app.inject(from('10.0.0.1'))
    await tick()
    for (let i = 0; i < 3; i++) expect((await app.inject(from('10.0.0.1'))).statusCode).toBe(429)
    g.open()
    const done = await first
    expect(done.headers.ratelimit).toBe('"5/minute";r=4;t=12, "concurrency";r=0')
    await eventually(() => app.rateLimiter.stats().slotsHeld === 0)
    const next = app.inject(from('10.0.0.1'))
    await tick()
    g.open()
    expect((await next).headers.ratelimit).toMatch(/^"5\/minute";r=3;/)
  })

  it('gives the slot back when the handler throws', async () => {
    const app = await appWith(store)
    app.get('/gen', { config: { rateLimit: { concurrency: 1 } } }, async () => { throw new Error('model crashed') })
    for (let i = 0; i < 3; i++) expect((await app.inject(from('10.0.0.1'))).statusCode).toBe(500)
    await eventually(() => app.rateLimiter.stats().slotsHeld === 0)
  })

  it('multiplies per-caller slots by the tier, unless the route gives the tier its own', async () => {
    const app = await appWith(store, { tiers: { premium: 3, pro: 2 }, tier: (r) => r.headers['x-tier'] as string | undefined })
    const g = gate()
    app.get('/gen', { config: { rateLimit: { concurrency: 1, tiers: { pro: { concurrency: 5 } } } } }, async () => { await g.wait(); return ok() })
    const burst = async (ip: string, tier: string | undefined, n: number): Promise<number> => {
      const headers: Record<string, string> = tier === undefined ? {} : { 'x-tier': tier }
      const pending = Array.from({ length: n }, () => app.inject(from(ip, '/gen', headers)))
      await tick(60)
      g.open()
      return (await Promise.all(pending)).filter(r => r.statusCode === 200).length
    }
    expect(await burst('10.0.0.1', undefined, 4)).toBe(1)
    expect(await burst('10.0.0.2', 'premium', 6)).toBe(3)
    expect(await burst('10.0.0.3', 'pro', 7)).toBe(5)
  })

  it('serves a route with only a concurrency limit, with no rate fields', async () => {
    const app = await appWith(store, { global: [] })
    app.get('/gen', { config: { rateLimit: { concurrency: 3 } } }, ok)
    const res = await app.inject(from('10.0.0.1'))
    expect(res.statusCode).toBe(200)
    expect(res.headers['ratelimit-policy']).toBe('"concurrency";q=3;qu="concurrent-requests"')
    expect(res.headers.ratelimit).toBe('"concurrency";r=2')
  })
})

/** A listening app, for what only a real socket does: aborts and timeouts. */
async function listening (store: StoreCase, serverOptions: FastifyServerOptions, route: (app: FastifyInstance) => void, prefix = randomPrefix()): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify(serverOptions)
  await app.register(gcra, { ...store.options(), prefix })
  route(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  return { app, url: `http://127.0.0.1:${address.port}` }
}

describe.each(storeCases)('slots over a real socket ($name)', (store) => {
  /** No slot left in Redis under `prefix` (trivially true for the memory store). */
  const noSlotKeys = async (prefix: string): Promise<boolean> => store.name !== 'redis' || (await redisClient().keys(`${prefix}:*slots`)).length === 0

  it('gives the slot back when the client aborts, while the handler still runs', async () => {
    const g = gate()
    const prefix = randomPrefix()
    const { app, url } = await listening(store, {}, (a) => {
      a.get('/gen', { config: { rateLimit: { concurrency: 1 } } }, async () => { await g.wait(); return ok() })
    }, prefix)
    try {
      const abort = new AbortController()
      const first = fetch(`${url}/gen`, { signal: abort.signal }).catch((error: unknown) => error)
      await eventually(() => app.rateLimiter.stats().slotsHeld === 1)
      abort.abort()
      await first
      await eventually(() => app.rateLimiter.stats().slotsHeld === 0)
      await eventually(() => noSlotKeys(prefix))
      const second = fetch(`${url}/gen`)
      await eventually(() => app.rateLimiter.stats().slotsHeld === 1)
      g.open()
      expect((await second).status).toBe(200)
    } finally {
      g.open()
      await app.close()
    }
  })

  it('gives the slot back when the connection times out', async () => {
    const g = gate()
    const prefix = randomPrefix()
    const { app, url } = await listening(store, { connectionTimeout: 200 }, (a) => {
      a.get('/gen', { config: { rateLimit: { concurrency: 1 } } }, async () => { await g.wait(); return ok() })
    }, prefix)
    try {
      const first = fetch(`${url}/gen`).catch((error: unknown) => error)
      await eventually(() => app.rateLimiter.stats().slotsHeld === 1)
      expect(await first).toBeInstanceOf(Error)
      await eventually(() => app.rateLimiter.stats().slotsHeld === 0)
      await eventually(() => noSlotKeys(prefix))
    } finally {
      g.open()
      await app.close()
    }
  })
})

describe.runIf(hasRedis)('concurrency slots in Redis', () => {
  it('a request whose slot call failed does not wait for the store again for its rate limits', async () => {
    const client = redisClient()
    const app = newApp()
    await app.register(gcra, { store: { redis: client }, prefix: randomPrefix(), storeTimeoutMs: 50, onStoreError: 'allow', metrics: true })
    app.get('/gen', { config: { rateLimit: { limits: ['10/minute'], concurrency: 1 } } }, ok)
    await app.ready()
    const scripts = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    let decisions = 0
    const acquire = scripts.fastifyGcraAcquireV1!
    const decide = scripts.fastifyGcraDecideV3!
    scripts.fastifyGcraAcquireV1 = (...args: unknown[]) => acquire.apply(client, args).then(async (reply) => { await tick(150); return reply })
    scripts.fastifyGcraDecideV3 = (...args: unknown[]) => { decisions++; return decide.apply(client, args) }
    expect((await app.inject(from('10.0.0.1'))).statusCode).toBe(200)
    expect(decisions).toBe(0)
    expect((await app.inject('/metrics')).body).toContain('fastify_gcra_requests_total{route="GET /gen",tier="none",outcome="unchecked"} 1')
    scripts.fastifyGcraAcquireV1 = acquire
    scripts.fastifyGcraDecideV3 = decide
  })

  it('is not left behind when a slot request times out but still reaches Redis', async () => {
    const prefix = randomPrefix()
    const client = redisClient()
    const app = newApp()
    await app.register(gcra, { store: { redis: client }, prefix, storeTimeoutMs: 50, onStoreError: 'allow' })
    app.get('/gen', { config: { rateLimit: { concurrency: 1 } } }, ok)
    await app.ready()
    // the script runs at once in Redis; its answer arrives after the timeout
    const scripts = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    const acquire = scripts.fastifyGcraAcquireV1!
    scripts.fastifyGcraAcquireV1 = (...args: unknown[]) => acquire.apply(client, args).then(async (reply) => { await tick(150); return reply })
    expect((await app.inject(from('10.0.0.1'))).statusCode).toBe(200)
    await eventually(async () => (await client.keys(`${prefix}:*slots`)).length === 0)
    scripts.fastifyGcraAcquireV1 = acquire
    expect((await app.inject(from('10.0.0.1'))).statusCode).toBe(200)
  })

  it('are shared by two app instances', async () => {
    const prefix = randomPrefix()
    const g = gate()
    const apps = await Promise.all([0, 1].map(async () => {
      const app = newApp()
      await app.register(gcra, { store: { redis: redisClient() }, prefix })
      app.get('/gen', { config: { rateLimit: { concurrency: 3 } } }, async () => { await g.wait(); return ok() })
      return app
    }))
    const pending = Array.from({ length: 8 }, (_, i) => apps[i % 2]!.inject(from('10.0.0.9')))
    await tick(100)
    g.open()
    const codes = (await Promise.all(pending)).map(r => r.statusCode)
    expect(codes.filter(c => c === 200)).toHaveLength(3)
    expect(codes.filter(c => c === 429)).toHaveLength(5)
  })

  it('a slot whose lease is not renewed (a crashed instance) ends with its lease', async () => {
    const client = redisClient()
    const store = new RedisStore(client, false)
    const key = `${randomPrefix()}:{x}:slots`
    expect(await store.acquire(key, 1, 'crashed', 200)).toEqual({ acquired: true, inFlight: 1 })
    expect(await store.acquire(key, 1, 'other', 200)).toEqual({ acquired: false, inFlight: 1 })
    await tick(250)
    expect(await store.acquire(key, 1, 'other', 200)).toEqual({ acquired: true, inFlight: 1 })
    // a renewal of an ended lease does not take the slot again
    await store.renew([key], ['crashed'], 200)
    expect(await client.zrange(key, '0', '-1')).toEqual(['other'])
    await store.release(key, 'other')
    expect(await client.exists(key)).toBe(0)
  })

  it('renews the leases of requests in flight, so a long request keeps its slot', async () => {
    const app = newApp()
    await app.register(gcra, { store: { redis: redisClient() }, prefix: randomPrefix(), concurrencyLeaseMs: 1000 })
    const g = gate()
    app.get('/gen', { config: { rateLimit: { concurrency: 1 } } }, async () => { await g.wait(); return ok() })
    const long = app.inject(from('10.0.0.1'))
    // past the lease: only renewals (every 333 ms) keep the slot
    await tick(1500)
    expect((await app.inject(from('10.0.0.1'))).statusCode).toBe(429)
    g.open()
    expect((await long).statusCode).toBe(200)
    await eventually(() => app.rateLimiter.stats().slotsHeld === 0)
  })

  it('follows onStoreError when Redis is down: 503 under deny, served under allow', async () => {
    for (const [policy, status] of [['deny', 503], ['allow', 200]] as const) {
      const app = newApp()
      await app.register(gcra, { store: { redis: 'redis://127.0.0.1:1' }, storeTimeoutMs: 50, onStoreError: policy })
      app.get('/gen', { config: { rateLimit: { concurrency: 1 } } }, ok)
      expect((await app.inject(from('10.0.0.1'))).statusCode).toBe(status)
    }
    expect(redisUrl).not.toBe('')
  })
})

describe('concurrency settings are checked at registration', () => {
  it('routes of one scope must agree on concurrency, and no limit may be named "concurrency"', async () => {
    const app = newApp()
    await app.register(gcra)
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'], scope: 's', concurrency: 1 } } }, ok)
    expect(() => app.get('/b', { config: { rateLimit: { limits: ['10/minute'], scope: 's', concurrency: 5 } } }, ok))
      .toThrow("expected the same limits, tier limits and concurrency as the other routes of scope 's'")
    expect(() => app.get('/c', { config: { rateLimit: { limits: [{ max: 5, per: '1 minute', name: 'concurrency' }], concurrency: 2 } } }, ok))
      .toThrow("expected limit names other than 'concurrency' on a route with a concurrency limit")
  })
})

describe.each(storeCases)('slots are never left behind ($name)', (store) => {
  /** Slot keys still in Redis under `prefix` (none for the memory store). */
  const slotKeys = async (prefix: string): Promise<string[]> => store.name === 'redis' ? redisClient().keys(`${prefix}:*slots`) : []

  it('when the client leaves during an earlier hook, before the slot is asked for', async () => {
    const prefix = randomPrefix()
    const app = Fastify()
    await app.register(gcra, { ...store.options(), prefix })
    app.addHook('onRequest', async () => { await tick(150) })
    app.get('/gen', { config: { rateLimit: { concurrency: 1 } } }, ok)
    await app.listen({ port: 0, host: '127.0.0.1' })
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/gen`
    try {
      const abort = new AbortController()
      const first = fetch(url, { signal: abort.signal }).catch((error: unknown) => error)
      await tick(40)
      abort.abort()
      await first
      await tick(250)
      expect(app.rateLimiter.stats().slotsHeld).toBe(0)
      expect(await slotKeys(prefix)).toEqual([])
      expect((await fetch(url)).status).toBe(200)
    } finally {
      await app.close()
    }
  })
})

describe.each(storeCases)('concurrency in the metrics ($name)', (store) => {
  it('counts refusals per caller (concurrency_refused) and at route capacity (reduced_capacity)', async () => {
    const app = await appWith(store, { metrics: true })
    const g = gate()
    app.get('/gen', { config: { rateLimit: { concurrency: { perCaller: 1, route: 2 } } } }, async () => { await g.wait(); return ok() })
    const held = [app.inject(from('10.0.0.1')), app.inject(from('10.0.0.2'))]
    await tick()
    expect((await app.inject(from('10.0.0.1'))).statusCode).toBe(429)
    expect((await app.inject(from('10.0.0.3'))).statusCode).toBe(503)
    g.open()
    await Promise.all(held)
    const metrics = (await app.inject('/metrics')).body
    expect(metrics).toContain('fastify_gcra_requests_total{route="GET /gen",tier="none",outcome="concurrency_refused"} 1')
    expect(metrics).toContain('fastify_gcra_requests_total{route="GET /gen",tier="none",outcome="reduced_capacity"} 1')
    // the two that got their slots: a concurrency-only route admits without a rate decision, at no cost
    expect(metrics).toContain('fastify_gcra_requests_total{route="GET /gen",tier="none",outcome="admitted"} 2')
    expect(metrics).not.toMatch(/fastify_gcra_cost_charged_total\{route="GET \/gen"[^}]*\} [1-9]/)
  })
})
