import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import gcra, { FST_GCRA_NO_PROM_CLIENT, type FastifyGcraOptions } from '../../lib/index.js'
import { loadPromClient } from '../../lib/observe/metrics.js'
import { appWith, newApp, ok, storeCases } from '../helpers/app.js'
import { hasRedis } from '../helpers/redis.js'
import { freePort } from '../setup/redis.js'
import { sample } from '../helpers/metrics.js'

async function scrape (app: FastifyInstance, url = '/metrics'): Promise<string> {
  const r = await app.inject(url)
  expect(r.statusCode).toBe(200)
  expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8')
  return r.body
}

const tierHook = (app: FastifyInstance): void => {
  app.addHook('onRequest', async (req) => {
    const tier = req.headers['x-tier']
    if (typeof tier === 'string') req.rateLimitTier = tier
    const key = req.headers['x-key']
    if (typeof key === 'string') req.rateLimitKey = key
  })
}

describe.each(storeCases)('metrics on the $name store', (store) => {
  it('count decided requests by route, tier and outcome, and the cost charged', async () => {
    const app = await appWith(store, { metrics: true, tiers: { free: 1, premium: 5 } })
    tierHook(app)
    app.get('/a', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    app.post('/batch', { config: { rateLimit: { limits: ['10/minute'], cost: (req) => (req.body as { n: number }).n } } }, ok)
    app.get('/health', { config: { rateLimit: false } }, ok)
    await app.ready()

    expect((await Promise.all([1, 2, 3].map(() => app.inject('/a')))).map(r => r.statusCode).sort()).toEqual([200, 200, 429])
    expect((await app.inject({ url: '/a', headers: { 'x-tier': 'premium', 'x-key': 'p' } })).statusCode).toBe(200)
    // a tier the plugin does not know is limited (and labelled) as no tier: never the caller's text
    expect((await app.inject({ url: '/a', headers: { 'x-tier': 'gold"} 1\nfake 2' } })).statusCode).toBe(429)
    expect((await app.inject({ method: 'POST', url: '/batch', payload: { n: 3 } })).statusCode).toBe(200)
    expect((await app.inject({ method: 'POST', url: '/batch', payload: { n: 4 }, headers: { 'x-tier': 'free' } })).statusCode).toBe(200)
    expect((await app.inject({ method: 'POST', url: '/batch', payload: { n: 11 } })).statusCode).toBe(413)
    await app.inject('/health')

    const text = await scrape(app)
    const requests = (route: string, tier: string, outcome: string) => sample(text, 'fastify_gcra_requests_total', { route, tier, outcome })
    expect(requests('GET /a', 'none', 'admitted')).toBe(2)
    expect(requests('GET /a', 'none', 'refused')).toBe(2)
    expect(requests('GET /a', 'premium', 'admitted')).toBe(1)
    expect(requests('POST /batch', 'none', 'admitted')).toBe(1)
    expect(requests('POST /batch', 'free', 'admitted')).toBe(1)
    expect(requests('POST /batch', 'none', 'too_large')).toBe(1)
    expect(sample(text, 'fastify_gcra_cost_charged_total', { route: 'POST /batch', tier: 'none' })).toBe(3)
    expect(sample(text, 'fastify_gcra_cost_charged_total', { route: 'POST /batch', tier: 'free' })).toBe(4)
    expect(sample(text, 'fastify_gcra_cost_charged_total', { route: 'GET /a', tier: 'none' })).toBe(2)
    // exempt routes and the metrics route itself are not counted; nor is raw caller text
    expect(text).not.toContain('/health')
    expect(text).not.toContain('/metrics')
    expect(text).not.toContain('gold')

    // counters go on from where they were: a second scrape adds only what happened since
    await app.inject('/a')
    const again = await scrape(app)
    expect(sample(again, 'fastify_gcra_requests_total', { route: 'GET /a', tier: 'none', outcome: 'refused' })).toBe(3)
    expect(sample(again, 'fastify_gcra_requests_total', { route: 'GET /a', tier: 'none', outcome: 'admitted' })).toBe(2)
  })

  it('serve the store\'s own gauges: memory size, or Redis latency', async () => {
    const app = await appWith(store, { metrics: true })
    app.get('/a', { config: { rateLimit: { limits: ['5/minute'] } } }, ok)
    await app.ready()
    for (let i = 0; i < 3; i++) await app.inject('/a')
    const text = await scrape(app)
    if (store.name === 'memory') {
      expect(sample(text, 'fastify_gcra_memory_store_keys')).toBe(1)
      expect(sample(text, 'fastify_gcra_memory_store_evicted_live_total')).toBe(0)
      expect(sample(text, 'fastify_gcra_store_duration_seconds_count')).toBe(0)
    } else {
      expect(sample(text, 'fastify_gcra_memory_store_keys')).toBeUndefined()
      expect(sample(text, 'fastify_gcra_store_duration_seconds_count')).toBe(3)
      expect(sample(text, 'fastify_gcra_store_duration_seconds_sum')).toBeGreaterThan(0)
      expect(sample(text, 'fastify_gcra_store_duration_seconds_bucket', { le: '+Inf' })).toBe(3)
      expect(sample(text, 'fastify_gcra_breaker_open', { node: 'redis' })).toBe(0)
    }
    expect(sample(text, 'fastify_gcra_deny_cache_hits_total')).toBe(0)
  })

  it('time every store call: decisions, concurrency slots and settles', async () => {
    const app = await appWith(store, { metrics: true })
    app.get('/a', { config: { rateLimit: { limits: ['50/minute'], cost: 10, concurrency: 1 } } }, async (_req, reply) => {
      await reply.rateLimit!.settle(2)
      return ok()
    })
    await app.ready()
    await app.inject('/a')
    const text = await scrape(app)
    // Redis: a slot, a decision and a settle (the release is not awaited by anyone); memory: none
    expect(sample(text, 'fastify_gcra_store_duration_seconds_count')).toBe(store.name === 'memory' ? 0 : 3)
    expect(sample(text, 'fastify_gcra_cost_charged_total', { route: 'GET /a', tier: 'none' })).toBe(2)
  })

  it('join a registry of yours, with a prefix, on a route you choose, and leave it when the app closes', async () => {
    const registry = new Registry()
    const { Counter } = await import('prom-client')
    const mine = new Counter({ name: 'my_app_jobs_total', help: 'jobs', registers: [registry] })
    mine.inc(7)
    const app = await appWith(store, { metrics: { registry, prefix: 'api_rl_', route: '/internal/prom' } })
    app.get('/a', { config: { rateLimit: { limits: ['5/minute'] } } }, ok)
    await app.ready()
    await app.inject('/a')
    expect((await app.inject('/metrics')).statusCode).toBe(404)
    const text = await scrape(app, '/internal/prom')
    expect(sample(text, 'my_app_jobs_total')).toBe(7)
    expect(sample(text, 'api_rl_requests_total', { route: 'GET /a', tier: 'none', outcome: 'admitted' })).toBe(1)
    expect(text).not.toContain('fastify_gcra_')
    // the same registry, read by the app itself
    expect(sample(await registry.metrics(), 'api_rl_requests_total', { route: 'GET /a', tier: 'none', outcome: 'admitted' })).toBe(1)
    await app.close()
    expect(registry.getSingleMetric('api_rl_requests_total')).toBeUndefined()
    expect(registry.getSingleMetric('my_app_jobs_total')).toBeDefined()
    // so that a new app (a restart in tests, a reload) can join it again
    const next = await appWith(store, { metrics: { registry, prefix: 'api_rl_', route: false } })
    await next.ready()
    expect((await next.inject('/metrics')).statusCode).toBe(404)
    expect(registry.getSingleMetric('api_rl_requests_total')).toBeDefined()
  })
})

describe('metrics: registries and options', () => {
  it('two apps in one process each get a registry of their own', async () => {
    const apps = await Promise.all([0, 1].map(async () => {
      const app = await appWith(storeCases[0]!, { metrics: true })
      app.get('/a', { config: { rateLimit: { limits: ['5/minute'] } } }, ok)
      await app.ready()
      return app
    }))
    await apps[0]!.inject('/a')
    await apps[0]!.inject('/a')
    await apps[1]!.inject('/a')
    const admitted = async (app: FastifyInstance) => sample(await scrape(app), 'fastify_gcra_requests_total', { route: 'GET /a', tier: 'none', outcome: 'admitted' })
    expect([await admitted(apps[0]!), await admitted(apps[1]!)]).toEqual([2, 1])
  })

  it('two plugin instances on one registry need distinct prefixes, said at startup', async () => {
    const registry = new Registry()
    const app = newApp()
    await app.register(async (child) => { await child.register(gcra, { metrics: { registry, route: false } }) })
    await expect(app.register(async (child) => { await child.register(gcra, { metrics: { registry, route: false } }) })).rejects.toThrow("fastify-gcra: options.metrics: expected a registry without a metric named 'fastify_gcra_requests_total' (give each plugin instance on one registry its own prefix), got a registry that has one")
  })

  it('a name taken in your registry fails at startup and leaves the registry as it was', async () => {
    const registry = new Registry()
    const { Gauge } = await import('prom-client')
    new Gauge({ name: 'fastify_gcra_breaker_open', help: 'mine', registers: [registry] }).set(3)
    await expect(newApp().register(gcra, { metrics: { registry, route: false } })).rejects.toThrow("expected a registry without a metric named 'fastify_gcra_breaker_open'")
    expect(registry.getMetricsAsArray().map(m => m.name)).toEqual(['fastify_gcra_breaker_open'])
  })

  it.each([
    [{ metrics: { route: 'metrics' } }, "options.metrics.route: expected a URL path starting with '/', or false, got \"metrics\""],
    [{ metrics: { route: false } }, 'options.metrics.route: expected a URL path, or false together with a registry of yours (else nothing could read the metrics), got false without a registry'],
    [{ metrics: { prefix: '9bad-' } }, "options.metrics.prefix: expected a metric name prefix: letters, digits, '_' and ':', not starting with a digit, got \"9bad-\""],
    [{ metrics: { registry: { metrics: () => '' } } }, 'options.metrics.registry: expected a prom-client Registry, got an object without registerMetric, getSingleMetric, removeSingleMetric()'],
    [{ metrics: { regsitry: new Registry() } }, "options.metrics.regsitry: expected one of the known keys (registry, prefix, route), got 'regsitry'"],
    [{ metrics: 'yes' }, 'options.metrics: expected true, false or { registry?, prefix?, route? }, got "yes"'],
  ])('a bad metrics option fails at startup: %j', async (options, message) => {
    const app = newApp()
    await expect(app.register(gcra, options as unknown as FastifyGcraOptions)).rejects.toThrow(`fastify-gcra: ${message}`)
  })

  it('a clear startup error when prom-client cannot be loaded', async () => {
    const missing = Object.assign(new Error("Cannot find package 'prom-client'"), { code: 'ERR_MODULE_NOT_FOUND' })
    const error = await loadPromClient(() => Promise.reject(missing)).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(FST_GCRA_NO_PROM_CLIENT)
    expect((error as Error).message).toBe("fastify-gcra: options.metrics needs prom-client, an optional peer dependency: npm install prom-client@15 (Cannot find package 'prom-client')")
    expect((error as Error).cause).toBe(missing)
    await expect(loadPromClient(() => Promise.resolve({ default: {} }))).rejects.toThrow('it has no Registry')
    // the real one loads, as an ES module namespace
    expect(typeof (await loadPromClient()).Registry).toBe('function')
  })

  it('add no hook to any route when metrics and refusal logs are off', async () => {
    const seen: unknown[] = []
    const app = newApp()
    await app.register(gcra, { limits: ['5/minute'] })
    app.addHook('onRoute', (route) => { seen.push(route.onResponse) })
    app.get('/a', ok)
    await app.ready()
    expect(seen).toEqual([undefined, undefined]) // GET and its HEAD
    expect((await app.inject('/metrics')).statusCode).toBe(404)
  })
})

describe.runIf(hasRedis)('metrics of a failing Redis', () => {
  async function deadRedisApp (onStoreError: 'allow' | 'deny' | 'local', extra: Partial<FastifyGcraOptions> = {}) {
    const client = new Redis({ port: await freePort(), lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 50 })
    client.on('error', () => {})
    const app = newApp()
    app.addHook('onClose', async () => { client.disconnect() })
    await app.register(gcra, { store: { redis: client }, storeTimeoutMs: 50, onStoreError, metrics: true, ...extra })
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    await app.ready()
    return app
  }

  it('count store errors, the open breaker and what the requests got under each onStoreError', async () => {
    const expected = { deny: ['store_unavailable', 503], allow: ['unchecked', 200], local: ['admitted_locally', 200] } as const
    for (const policy of ['deny', 'allow', 'local'] as const) {
      const app = await deadRedisApp(policy)
      for (let i = 0; i < 2; i++) expect((await app.inject('/p')).statusCode).toBe(expected[policy][1])
      for (let i = 0; i < 3; i++) await app.inject('/p')
      const text = await scrape(app)
      const [outcome] = expected[policy]
      expect(sample(text, 'fastify_gcra_requests_total', { route: 'GET /p', tier: 'none', outcome }), policy).toBe(policy === 'local' ? 2 : 5)
      if (policy === 'local') expect(sample(text, 'fastify_gcra_requests_total', { route: 'GET /p', tier: 'none', outcome: 'refused_locally' })).toBe(3)
      // three failed calls open the breaker; the store is not called after that
      expect(sample(text, 'fastify_gcra_store_errors_total', { kind: 'error' })).toBe(3)
      expect(sample(text, 'fastify_gcra_store_duration_seconds_count')).toBe(3)
      expect(sample(text, 'fastify_gcra_breaker_open', { node: 'redis' })).toBe(1)
      await app.close()
    }
  }, 20_000)

  it('count timeouts as their own kind', async () => {
    const server = await import('node:net').then(net => net.createServer(() => {}))
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    // a server that accepts and never answers
    const client = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0 })
    client.on('error', () => {})
    const app = newApp()
    app.addHook('onClose', async () => { client.disconnect(); server.close() })
    await app.register(gcra, { store: { redis: client }, storeTimeoutMs: 30, onStoreError: 'allow', metrics: true })
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    await app.ready()
    expect((await app.inject('/p')).statusCode).toBe(200)
    const text = await scrape(app)
    expect(sample(text, 'fastify_gcra_store_errors_total', { kind: 'timeout' })).toBe(1)
    expect(sample(text, 'fastify_gcra_store_duration_seconds_bucket', { le: '0.025' })).toBe(0)
    expect(sample(text, 'fastify_gcra_store_duration_seconds_bucket', { le: '0.05' })).toBe(1)
  })

  it('count the refusals the deny cache answered without Redis', async () => {
    const app = await appWith(storeCases[1]!, { metrics: true })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.ready()
    const codes = []
    for (let i = 0; i < 4; i++) codes.push((await app.inject('/p')).statusCode)
    expect(codes).toEqual([200, 429, 429, 429])
    const text = await scrape(app)
    expect(sample(text, 'fastify_gcra_deny_cache_hits_total')).toBe(2)
    expect(sample(text, 'fastify_gcra_store_duration_seconds_count')).toBe(2)
    expect(sample(text, 'fastify_gcra_requests_total', { route: 'GET /p', tier: 'none', outcome: 'refused' })).toBe(3)
  })
})
