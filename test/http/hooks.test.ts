import { Type } from '@sinclair/typebox'
import { createServer, type Server } from 'node:net'
import { describe, expect, it } from 'vitest'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Redis } from 'ioredis'
import gcra from '../../lib/index.js'
import { appWith, newApp, ok, statuses, storeCases, type LogLine } from '../helpers/app.js'
import { freePort } from '../setup/redis.js'

const Batch = Type.Object({ inputs: Type.Array(Type.Number(), { minItems: 1, maxItems: 64 }) })
const batchCost = (req: FastifyRequest) => (req.body as { inputs: number[] }).inputs.length

function batchRoute (app: FastifyInstance, counters: { cost: number, parsed: number }, limits = ['10/minute']): void {
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    counters.parsed++
    try {
      done(null, JSON.parse(body as string))
    } catch (error) {
      done(error as Error, undefined)
    }
  })
  app.post('/batch', {
    schema: { body: Batch },
    config: { rateLimit: { limits, cost: (req) => { counters.cost++; return batchCost(req) } } },
  }, ok)
}

const batch = (n: number) => ({ method: 'POST' as const, url: '/batch', payload: { inputs: Array.from({ length: n }, (_, i) => i) } })
const errors = (logs: LogLine[]) => logs.filter(l => l.level >= 50)

describe.each(storeCases)('costs and hooks on the $name store', (store) => {
  it('charges a fixed cost in onRequest', async () => {
    const app = await appWith(store)
    app.get('/two', { config: { rateLimit: { limits: ['5/minute'], cost: 2 } } }, ok)
    const first = await app.inject('/two')
    expect(first.headers.ratelimit).toBe('"5/minute";r=3;t=12')
    expect((await app.inject('/two')).headers.ratelimit).toBe('"5/minute";r=1;t=12')
    const refused = await app.inject('/two')
    expect(refused.statusCode).toBe(429)
    expect(refused.headers['retry-after']).toBe('12')
    expect(refused.json().detail).toBe('Limit "5/minute" exceeded: this request costs 2 units. Retry in 12 seconds.')
  })

  it('charges a body cost after parsing and validation, and an invalid body nothing', async () => {
    const app = await appWith(store)
    const counters = { cost: 0, parsed: 0 }
    batchRoute(app, counters)
    expect((await app.inject({ method: 'POST', url: '/batch', payload: { inputs: [] } })).statusCode).toBe(400)
    expect((await app.inject({ method: 'POST', url: '/batch', payload: { nope: 1 } })).statusCode).toBe(400)
    expect(counters.cost).toBe(0)
    const r = await app.inject(batch(4))
    expect(r.statusCode).toBe(200)
    expect(r.headers.ratelimit).toBe('"10/minute";r=6;t=6')
    expect((await app.inject(batch(6))).statusCode).toBe(200)
    expect(counters.cost).toBe(2)
  })

  it('turns away a caller whose bucket is empty before reading the body', async () => {
    const app = await appWith(store)
    const counters = { cost: 0, parsed: 0 }
    batchRoute(app, counters)
    expect((await app.inject(batch(10))).statusCode).toBe(200)
    expect(counters).toEqual({ cost: 1, parsed: 1 })
    const refused = await app.inject(batch(1))
    expect(refused.statusCode).toBe(429)
    expect(refused.headers['retry-after']).toBe('6')
    expect(refused.json().detail).toBe('Limit "10/minute" exceeded: no units left. Retry in 6 seconds.')
    // neither the body parser nor the cost function ran for it
    expect(counters).toEqual({ cost: 1, parsed: 1 })
  })

  it('refuses after the body when the batch is larger than what is left', async () => {
    const app = await appWith(store)
    const counters = { cost: 0, parsed: 0 }
    batchRoute(app, counters)
    expect((await app.inject(batch(8))).statusCode).toBe(200)
    const refused = await app.inject(batch(5))
    expect(refused.statusCode).toBe(429)
    expect(refused.headers['retry-after']).toBe('18')
    // the refused batch was not charged: 2 still fit
    expect((await app.inject(batch(2))).statusCode).toBe(200)
  })

  it('answers 413 without Retry-After for a cost that can never fit, and charges nothing', async () => {
    const app = await appWith(store, { tiers: { free: 1, premium: 5 }, tier: (req) => req.headers['x-test-tier'] as string | undefined })
    const counters = { cost: 0, parsed: 0 }
    batchRoute(app, counters)
    expect((await app.inject(batch(3))).statusCode).toBe(200)
    const tooBig = await app.inject(batch(11))
    expect(tooBig.statusCode).toBe(413)
    expect(tooBig.headers['retry-after']).toBeUndefined()
    // a limited response all the same: both fields, read without charging
    expect(tooBig.headers['ratelimit-policy']).toBe('"10/minute";q=10;w=60')
    expect(tooBig.headers.ratelimit).toBe('"10/minute";r=7;t=6')
    expect(tooBig.json()).toMatchObject({ status: 413, 'max-cost': 10 })
    expect(tooBig.json().detail).toBe('This request costs 11 units, more than this route ever admits at once: the largest cost is 10 ("10/minute"). Send smaller requests.')
    expect((await app.inject(batch(11))).headers.ratelimit).toBe('"10/minute";r=7;t=6')
    // the 413s charged nothing: exactly the 7 units left still fit
    const rest = await app.inject(batch(7))
    expect(rest.statusCode).toBe(200)
    expect(rest.headers.ratelimit).toBe('"10/minute";r=0;t=6')

    const other = { remoteAddress: '10.3.3.3' }
    const free = await app.inject({ ...batch(11), ...other, headers: { 'x-test-tier': 'free' } })
    expect(free.json().detail).toContain('the "free" tier')
    const unknown = await app.inject({ ...batch(11), ...other, headers: { 'x-test-tier': 'gold' } })
    expect(unknown.json().detail).toContain('more than this route ever admits')
    // premium ×5 admits 50 at once
    expect((await app.inject({ ...batch(11), ...other, headers: { 'x-test-tier': 'premium' } })).statusCode).toBe(200)
  })

  for (const [what, cost, shown] of [
    ['throws', () => { throw new Error('no inputs') }, 'an exception: no inputs'],
    ['returns NaN', () => Number.NaN, 'NaN'],
    ['returns a negative number', () => -2, '-2'],
    ['returns a tiny negative number', () => -0.001, '-0.001'],
    ['returns a string', () => '3', 'a string'],
    ['returns an object', () => ({ apiKey: 'sk-live-secret' }), 'an object'],
    ['rejects', async () => { throw new Error('db down') }, 'an exception: db down'],
  ] as const) {
    it(`answers 500, logs the error and charges nothing when the cost function ${what}`, async () => {
      const app = await appWith(store)
      app.post('/bad', { config: { rateLimit: { limits: ['2/minute'], scope: 'shared', cost: cost as never } } }, ok)
      app.post('/good', { config: { rateLimit: { limits: ['2/minute'], scope: 'shared' } } }, ok)
      const r = await app.inject({ method: 'POST', url: '/bad' })
      expect(r.statusCode).toBe(500)
      expect(r.body).not.toContain('    at ')
      const logged = errors(app.logs)
      expect(logged).toHaveLength(1)
      expect(logged[0]!.err?.code).toBe('FST_GCRA_INVALID_COST')
      expect(logged[0]!.err?.message).toBe(`fastify-gcra: the cost of POST /bad must be a finite number >= 0, got ${shown}`)
      expect((await app.inject({ method: 'POST', url: '/good' })).headers.ratelimit).toBe('"2/minute";r=1;t=30')
    })
  }

  it('serves a free route (cost 0) even from an empty bucket, charges nothing, and still gives the fields and request.rateLimit', async () => {
    const app = await appWith(store)
    app.get('/paid', { config: { rateLimit: { limits: ['2/minute'], scope: 'model' } } }, ok)
    app.get('/free', { config: { rateLimit: { limits: ['2/minute'], scope: 'model', cost: 0 } } }, async (req, reply) => ({ rl: req.rateLimit, charged: reply.rateLimit?.charged }))
    const fresh = await app.inject('/free')
    expect(fresh.statusCode).toBe(200)
    expect(fresh.headers['ratelimit-policy']).toBe('"2/minute";q=2;w=60')
    expect(fresh.headers.ratelimit).toBe('"2/minute";r=2;t=0')
    expect(fresh.json()).toMatchObject({ rl: { allowed: true, cost: 0, remaining: 2, retryAfterMs: 0 }, charged: 0 })
    // it charged nothing: both paid requests still fit
    expect(await statuses(app, 3, '/paid')).toEqual([200, 200, 429])
    // the bucket is empty now: a free request is still admitted, and shows the state
    const empty = await app.inject('/free')
    expect(empty.statusCode).toBe(200)
    expect(empty.headers['retry-after']).toBeUndefined()
    expect(empty.headers.ratelimit).toBe('"2/minute";r=0;t=30')
    expect(empty.json()).toMatchObject({ rl: { allowed: true, cost: 0, remaining: 0, retryAfterMs: 0 }, charged: 0 })
    // and still charged nothing
    expect(await statuses(app, 1, '/paid')).toEqual([429])
  })

  it('serves a request whose cost function returns 0 as free: 200, charged nothing', async () => {
    const app = await appWith(store)
    app.post('/embed', { config: { rateLimit: { limits: ['3/minute'], cost: (req) => (req.body as { inputs: unknown[] }).inputs.length } } }, async (req) => ({ rl: req.rateLimit }))
    const empty = { method: 'POST' as const, url: '/embed', payload: { inputs: [] } }
    const free = await app.inject(empty)
    expect(free.statusCode).toBe(200)
    expect(free.headers.ratelimit).toBe('"3/minute";r=3;t=0')
    expect(free.json().rl).toMatchObject({ allowed: true, cost: 0, remaining: 3 })
    expect(errors(app.logs)).toEqual([])
    expect((await app.inject({ ...empty, payload: { inputs: [1, 2, 3] } })).statusCode).toBe(200)
    // a body-cost route checks a unit before reading the body: an empty bucket is turned away first
    expect((await app.inject(empty)).statusCode).toBe(429)
  })

  it('with hook: \'preHandler\', serves a free body-cost request even from an empty bucket', async () => {
    const app = await appWith(store, { hook: 'preHandler' })
    app.post('/embed', { config: { rateLimit: { limits: ['3/minute'], cost: (req) => (req.body as { inputs: unknown[] }).inputs.length } } }, ok)
    expect((await app.inject({ method: 'POST', url: '/embed', payload: { inputs: [1, 2, 3] } })).statusCode).toBe(200)
    const free = await app.inject({ method: 'POST', url: '/embed', payload: { inputs: [] } })
    expect(free.statusCode).toBe(200)
    expect(free.headers.ratelimit).toBe('"3/minute";r=0;t=20')
    expect((await app.inject({ method: 'POST', url: '/embed', payload: { inputs: [1] } })).statusCode).toBe(429)
  })

  it('uses the identity and tier auth hooks set, whether registered before or after the plugin', async () => {
    const app = newApp()
    app.addHook('onRequest', async (req) => { req.rateLimitKey = req.headers['x-user'] as string })
    await app.register(gcra, { ...store.options(), tiers: { premium: 3 } })
    app.addHook('onRequest', async (req) => { if (req.headers['x-premium'] === '1') req.rateLimitTier = 'premium' })
    app.get('/me', { config: { rateLimit: { limits: ['1/minute'] } } }, async (req) => ({ tier: req.rateLimit?.tier }))
    expect(await statuses(app, 2, { url: '/me', headers: { 'x-user': 'ann' } })).toEqual([200, 429])
    expect(await statuses(app, 1, { url: '/me', headers: { 'x-user': 'bob' } })).toEqual([200])
    // the hook registered after the plugin ran first too: carol is premium, 3 at once
    const carol = { url: '/me', headers: { 'x-user': 'carol', 'x-premium': '1' } }
    expect((await app.inject(carol)).json()).toEqual({ tier: 'premium' })
    expect(await statuses(app, 3, carol)).toEqual([200, 200, 429])
  })

  it('charges a fixed cost in onRequest, so even a request with an invalid body is charged', async () => {
    const app = await appWith(store)
    app.post('/fixed', { schema: { body: Batch }, config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    const bad = { method: 'POST' as const, url: '/fixed', payload: { nope: 1 } }
    expect((await app.inject(bad)).statusCode).toBe(400)
    expect((await app.inject(bad)).headers.ratelimit).toBe('"2/minute";r=0;t=30')
    expect((await app.inject({ method: 'POST', url: '/fixed', payload: { inputs: [1] } })).statusCode).toBe(429)
  })

  it('with hook: \'preHandler\', charges after preHandler auth hooks', async () => {
    const app = await appWith(store, { hook: 'preHandler' })
    app.addHook('preHandler', async (req) => { req.rateLimitKey = req.headers['x-user'] as string })
    app.get('/me', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    expect(await statuses(app, 2, { url: '/me', headers: { 'x-user': 'ann' } })).toEqual([200, 429])
    expect(await statuses(app, 1, { url: '/me', headers: { 'x-user': 'bob' } })).toEqual([200])
  })

  it('appends its hook after a route\'s own onRequest hooks', async () => {
    const app = await appWith(store)
    app.get('/r', {
      onRequest: async (req) => { req.rateLimitKey = 'from-route-hook' },
      config: { rateLimit: { limits: ['1/minute'] } },
    }, ok)
    expect(await statuses(app, 1, { url: '/r', remoteAddress: '10.1.1.1' })).toEqual([200])
    expect(await statuses(app, 1, { url: '/r', remoteAddress: '10.1.1.2' })).toEqual([429])
  })
})

describe('a store that fails or hangs', () => {
  let server: Server | undefined

  /** A TCP port that accepts connections and never answers: a hung Redis. */
  async function silentPort (): Promise<number> {
    server = createServer(() => {})
    await new Promise<void>(resolve => server!.listen(0, '127.0.0.1', resolve))
    return (server.address() as { port: number }).port
  }

  async function appOn (client: Redis, onStoreError: 'allow' | 'deny'): Promise<ReturnType<typeof newApp>> {
    const app = newApp()
    app.addHook('onClose', async () => { client.disconnect(); server?.close() })
    await app.register(gcra, { store: { redis: client }, storeTimeoutMs: 50, onStoreError })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    return app
  }

  it('serves without rate-limit fields when allowed to, and logs the outage once', async () => {
    const client = new Redis({ port: await freePort(), lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    const app = await appOn(client, 'allow')
    for (let i = 0; i < 3; i++) {
      const r = await app.inject('/p')
      expect(r.statusCode).toBe(200)
      expect(r.headers.ratelimit).toBeUndefined()
      expect(r.headers['ratelimit-policy']).toBeUndefined()
    }
    expect(app.logs.filter(l => l.msg.includes('the store failed'))).toHaveLength(1)
  })

  it('answers 503 with Retry-After when told to deny', async () => {
    const client = new Redis({ port: await freePort(), lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    const app = await appOn(client, 'deny')
    const r = await app.inject('/p')
    expect(r.statusCode).toBe(503)
    expect(r.headers['retry-after']).toBe('1')
    expect(r.json().detail).toBe('The rate limiter cannot reach its store. Retry in 1 second.')
  })

  it('never holds a request longer than storeTimeoutMs on a Redis that does not answer', async () => {
    const client = new Redis({ port: await silentPort(), maxRetriesPerRequest: 0 })
    const app = await appOn(client, 'allow')
    await app.ready()
    for (let i = 0; i < 3; i++) {
      const started = Date.now()
      const r = await app.inject('/p')
      const took = Date.now() - started
      expect(r.statusCode).toBe(200)
      // the bound is 50 ms; allow scheduling noise on a loaded machine, not a hang
      expect(took).toBeLessThan(2000)
    }
    // the third timeout in a row opens the breaker, and the outage is logged with its cause
    expect(app.logs.find(l => l.msg.includes('the store failed'))?.err?.code).toBe('FST_GCRA_STORE_TIMEOUT')
  })

  it('lets a body-cost route wait for a hung Redis once, not in both of its hooks', async () => {
    const client = new Redis({ port: await silentPort(), maxRetriesPerRequest: 0 })
    const app = newApp()
    app.addHook('onClose', async () => { client.disconnect(); server?.close() })
    await app.register(gcra, { store: { redis: client }, storeTimeoutMs: 300, onStoreError: 'allow' })
    app.post('/b', { config: { rateLimit: { limits: ['10/minute'], cost: (req) => (req.body as { n: number }).n } } }, async (req) => ({ rl: req.rateLimit }))
    await app.ready()
    const named = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    const original = named.fastifyGcraDecideV3!.bind(client)
    let calls = 0
    named.fastifyGcraDecideV3 = (...args: unknown[]) => { calls++; return original(...args) }
    const started = Date.now()
    const r = await app.inject({ method: 'POST', url: '/b', payload: { n: 2 } })
    expect(r.statusCode).toBe(200)
    // the check before the body timed out; the charge in preHandler did not ask the store again
    expect(calls).toBe(1)
    expect(Date.now() - started).toBeLessThan(2000)
    // served under 'allow' without a decision: nothing to tell the handler
    expect(r.json()).toEqual({ rl: null })
  })
})

describe('onStoreError: \'local\' while the store is down', () => {
  it('limits exactly with the in-memory GCRA, says less in the fields, and flags the decision', async () => {
    const client = new Redis({ port: await freePort(), lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null })
    const app = newApp()
    app.addHook('onClose', async () => { client.disconnect() })
    await app.register(gcra, { store: { redis: client }, storeTimeoutMs: 50, onStoreError: 'deny' })
    app.get('/p', { config: { rateLimit: { limits: ['3/minute'], onStoreError: 'local' } } }, async (req) => ({ degraded: req.rateLimit?.degraded, remaining: req.rateLimit?.remaining }))
    app.get('/strict', { config: { rateLimit: { limits: ['3/minute'] } } }, ok)
    const replies = []
    for (let i = 0; i < 4; i++) replies.push(await app.inject('/p'))
    expect(replies.map(r => r.statusCode)).toEqual([200, 200, 200, 429])
    expect(replies[0]!.json()).toEqual({ degraded: true, remaining: 2 })
    for (const r of replies) {
      expect(r.headers['ratelimit-policy']).toBe('"3/minute";q=3;w=60')
      expect(r.headers.ratelimit).toBeUndefined()
    }
    expect(replies[3]!.headers['retry-after']).toBe('20')
    // the plugin-wide policy still holds on the other route
    expect((await app.inject('/strict')).statusCode).toBe(503)
  })
})
