import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import gcra, { fastifyGcra } from '../lib/index.js'
import { appWith, newApp, ok, statuses, storeCases } from './helpers/app.js'
import { hasRedis, randomPrefix, redisClient, redisUrl } from './helpers/redis.js'

describe.each(storeCases)('plugin on the $name store', (store) => {
  it('limits a route with a limit string, then answers 429 with Retry-After and a problem body', async () => {
    const app = await appWith(store)
    app.get('/predict', { config: { rateLimit: { limits: ['3/minute'] } } }, ok)
    const first = await app.inject('/predict')
    expect(first.statusCode).toBe(200)
    expect(first.headers['ratelimit-policy']).toBe('"3/minute";q=3;w=60')
    expect(first.headers.ratelimit).toBe('"3/minute";r=2;t=20')
    expect(await statuses(app, 2, '/predict')).toEqual([200, 200])
    const refused = await app.inject('/predict')
    expect(refused.statusCode).toBe(429)
    expect(refused.headers['retry-after']).toBe('20')
    expect(refused.headers['content-type']).toBe('application/problem+json; charset=utf-8')
    expect(refused.headers.ratelimit).toBe('"3/minute";r=0;t=20')
    expect(refused.json()).toEqual({
      type: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
      title: 'Request quota exceeded',
      status: 429,
      detail: 'Limit "3/minute" exceeded: this request costs 1 unit. Retry in 20 seconds.',
      'violated-policies': ['3/minute'],
    })
  })

  it('reads limit objects with burst and name, and \'N/K units\' strings', async () => {
    const app = await appWith(store)
    app.get('/a', { config: { rateLimit: { limits: [{ max: 2, per: '1 minute', burst: 4, name: 'burst4' }] } } }, ok)
    app.get('/b', { config: { rateLimit: { limits: ['100/15 minutes'] } } }, ok)
    app.get('/c', { config: { rateLimit: { limits: [{ max: 5, per: 10_000 }] } } }, ok)
    expect(await statuses(app, 5, '/a')).toEqual([200, 200, 200, 200, 429])
    const a = await app.inject('/a')
    // the burst is the capacity: 4 units, refilled at 2 a minute in 2 minutes
    expect(a.headers['ratelimit-policy']).toBe('"burst4";q=4;w=120')
    expect(a.headers['retry-after']).toBe('30')
    expect((await app.inject('/b')).headers['ratelimit-policy']).toBe('"100/15 minutes";q=100;w=900')
    expect((await app.inject('/c')).headers['ratelimit-policy']).toBe('"5/10 seconds";q=5;w=10')
  })

  it('checks stacked limits together: refused by one, charged to none', async () => {
    const app = await appWith(store)
    app.get('/s', { config: { rateLimit: { limits: ['5/minute', '2/hour'] } } }, async (req) => req.rateLimit)
    expect(await statuses(app, 2, '/s')).toEqual([200, 200])
    const refused = await app.inject('/s')
    expect(refused.statusCode).toBe(429)
    expect(refused.json()['violated-policies']).toEqual(['2/hour'])
    expect(refused.headers['retry-after']).toBe('1800')
    // the minute limit was not charged for the refused request: 3 of 5 left, not 2
    expect(refused.headers.ratelimit).toBe('"5/minute";r=3;t=12, "2/hour";r=0;t=1800')
  })

  it('applies the plugin\'s default limits to routes without their own, and route limits over them', async () => {
    const app = await appWith(store, { limits: ['2/minute'] })
    app.get('/default', ok)
    app.get('/own', { config: { rateLimit: { limits: ['3/minute'] } } }, ok)
    app.get('/cost', { config: { rateLimit: { cost: 2 } } }, ok)
    expect(await statuses(app, 3, '/default')).toEqual([200, 200, 429])
    expect(await statuses(app, 4, '/own')).toEqual([200, 200, 200, 429])
    expect((await app.inject('/cost')).headers['ratelimit-policy']).toBe('"2/minute";q=2;w=60')
  })

  it('shares global limits per identity across every limited route', async () => {
    const app = await appWith(store, { global: ['3/minute'] })
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    app.get('/b', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    app.get('/plain', ok)
    expect(await statuses(app, 2, '/a')).toEqual([200, 200])
    const b = await app.inject('/b')
    expect(b.statusCode).toBe(200)
    expect(b.headers.ratelimit).toBe('"10/minute";r=9;t=6, "global 3/minute";r=0;t=20')
    const refused = await app.inject('/plain')
    expect(refused.statusCode).toBe(429)
    expect(refused.json()['violated-policies']).toEqual(['global 3/minute'])
    // another caller has its own global bucket
    expect((await app.inject({ url: '/a', remoteAddress: '10.0.0.9' })).statusCode).toBe(200)
  })

  it('lets two routes with one scope share one bucket', async () => {
    const app = await appWith(store)
    const rateLimit = { limits: ['3/minute'], scope: 'inference' }
    app.post('/predict', { config: { rateLimit } }, ok)
    app.post('/explain', { config: { rateLimit: { ...rateLimit, cost: 2 } } }, ok)
    app.post('/other', { config: { rateLimit: { limits: ['3/minute'] } } }, ok)
    expect((await app.inject({ method: 'POST', url: '/predict' })).statusCode).toBe(200)
    const explain = await app.inject({ method: 'POST', url: '/explain' })
    expect(explain.statusCode).toBe(200)
    expect(explain.headers.ratelimit).toBe('"3/minute";r=0;t=20')
    expect((await app.inject({ method: 'POST', url: '/predict' })).statusCode).toBe(429)
    // a route without the scope keeps its own bucket
    expect((await app.inject({ method: 'POST', url: '/other' })).statusCode).toBe(200)
  })

  it('exempts rateLimit: false routes from route, default and global limits, and sends no fields', async () => {
    const app = await appWith(store, { limits: ['1/minute'], global: ['1/minute'] })
    app.get('/health', { config: { rateLimit: false } }, async (req) => ({ rateLimit: req.rateLimit }))
    for (let i = 0; i < 5; i++) {
      const r = await app.inject('/health')
      expect(r.statusCode).toBe(200)
      expect(r.json()).toEqual({ rateLimit: null })
      expect(Object.keys(r.headers).filter(h => h.includes('ratelimit'))).toEqual([])
    }
  })

  it('charges a HEAD request once, to its GET route\'s bucket', async () => {
    const app = await appWith(store)
    app.get('/item', { config: { rateLimit: { limits: ['3/minute'] } } }, ok)
    const head = await app.inject({ method: 'HEAD', url: '/item' })
    expect(head.statusCode).toBe(200)
    expect(head.headers.ratelimit).toBe('"3/minute";r=2;t=20')
    expect((await app.inject('/item')).headers.ratelimit).toBe('"3/minute";r=1;t=20')
  })

  it('gives the handler request.rateLimit', async () => {
    const app = await appWith(store, { global: ['10/minute'] })
    app.get('/r', { config: { rateLimit: { limits: ['4/minute'], cost: 3 } } }, async (req) => req.rateLimit)
    const body = (await app.inject('/r')).json()
    expect(body).toEqual({
      allowed: true,
      remaining: 1,
      resetMs: 15_000,
      retryAfterMs: 0,
      cost: 3,
      tier: null,
      maxCost: 4,
      policies: [
        { name: '4/minute', quota: 4, burst: 4, windowMs: 60_000, remaining: 1, resetMs: 15_000, retryAfterMs: 0 },
        { name: 'global 10/minute', quota: 10, burst: 10, windowMs: 60_000, remaining: 7, resetMs: 6_000, retryAfterMs: 0 },
      ],
      degraded: false,
      delayedMs: 0,
      shadow: false,
    })
  })

  it('fails ready() for a route registered before the plugin, naming it, and limits the routes after it', async () => {
    const app = newApp()
    app.get('/early', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.register(gcra, { ...store.options() })
    app.get('/late', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await expect(app.ready()).rejects.toMatchObject({ code: 'FST_GCRA_UNSEEN_ROUTE', message: expect.stringContaining('GET /early') })
    const fixed = newApp()
    await fixed.register(gcra, { ...store.options() })
    fixed.get('/late', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    expect(await statuses(fixed, 2, '/late')).toEqual([200, 429])
  })

  it('decorates the root instance, whatever context the routes are in', async () => {
    const app = await appWith(store)
    await app.register(async (child) => {
      child.get('/child', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    }, { prefix: '/v1' })
    expect(typeof app.rateLimiter.consume).toBe('function')
    expect(await statuses(app, 2, '/v1/child')).toEqual([200, 429])
  })
})

describe.runIf(hasRedis)('plugin on one Redis shared by app instances', () => {
  it('admits exactly the burst under 200 concurrent requests from two instances', async () => {
    const prefix = randomPrefix()
    const make = async () => {
      const app = newApp()
      await app.register(gcra, { store: { redis: redisClient() }, prefix })
      app.post('/predict', { config: { rateLimit: { limits: [{ max: 10, per: '1 hour', burst: 37 }] } } }, ok)
      await app.ready()
      return app
    }
    const [a, b] = await Promise.all([make(), make()])
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a! : b!).inject({ method: 'POST', url: '/predict' })))
    const admitted = replies.filter(r => r.statusCode === 200).length
    expect(admitted).toBe(37)
    expect(replies.filter(r => r.statusCode === 429).length).toBe(163)
  })

  it('connects from a URL, and closes the client it made', async () => {
    const admin = redisClient()
    const named = async (): Promise<number> => (await admin.client('LIST') as string).split('\n').filter(l => l.includes('name=fastify-gcra ')).length
    const before = await named()
    const app = newApp()
    await app.register(gcra, { store: { redis: redisUrl }, prefix: randomPrefix() })
    app.get('/u', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    expect(await statuses(app, 2, '/u')).toEqual([200, 429])
    expect(await named()).toBe(before + 1)
    await app.close()
    // the server drops the connection just after QUIT's reply
    for (let i = 0; i < 20 && await named() !== before; i++) await new Promise(resolve => setTimeout(resolve, 50))
    expect(await named()).toBe(before)
  })

  it('leaves a client it was given open when the app closes', async () => {
    const client = redisClient()
    const app = Fastify()
    await app.register(fastifyGcra, { store: { redis: client }, prefix: randomPrefix() })
    await app.ready()
    await app.close()
    expect(await client.ping()).toBe('PONG')
  })
})
