// An empty batch costs 0: it is a free request, not the server's bug. It was answered 500
// FST_GCRA_INVALID_COST ("must be a finite number > 0") by a route whose cost counts the
// inputs, the first thing a newcomer's batch endpoint meets.
import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { appWith, ok, storeCases } from '../helpers/app.js'
import { hasRedis, randomPrefix, redisClient } from '../helpers/redis.js'

const embed = (inputs: number[]) => ({ method: 'POST' as const, url: '/embed', payload: { inputs } })

describe.each(storeCases)('an empty batch on the $name store', (store) => {
  it('is answered 200, charged nothing, and still told the limits', async () => {
    const app = await appWith(store, { metrics: true })
    app.post('/embed', {
      config: { rateLimit: { limits: ['10/minute'], cost: (req) => (req.body as { inputs: number[] }).inputs.length } },
    }, async (req, reply) => ({ rl: req.rateLimit, charged: reply.rateLimit?.charged }))
    const empty = await app.inject(embed([]))
    expect(empty.statusCode).toBe(200)
    expect(empty.headers['ratelimit-policy']).toBe('"10/minute";q=10;w=60')
    expect(empty.headers.ratelimit).toBe('"10/minute";r=10;t=0')
    expect(empty.json()).toMatchObject({ rl: { allowed: true, cost: 0, remaining: 10, retryAfterMs: 0 }, charged: 0 })
    expect(app.logs.filter(l => l.level >= 50)).toEqual([])
    // nothing was charged: the whole burst still fits
    const full = await app.inject(embed(Array.from({ length: 10 }, (_, i) => i)))
    expect(full.statusCode).toBe(200)
    expect(full.headers.ratelimit).toBe('"10/minute";r=0;t=6')
    // counted as admitted, at no cost
    const metrics = (await app.inject('/metrics')).body
    expect(metrics).toContain('fastify_gcra_requests_total{route="POST /embed",tier="none",outcome="admitted"} 2')
    expect(metrics).toContain('fastify_gcra_cost_charged_total{route="POST /embed",tier="none"} 10')
  })

  it('has nothing to settle', async () => {
    const app = await appWith(store)
    const settled: unknown[] = []
    app.post('/embed', {
      config: { rateLimit: { limits: ['10/minute'], cost: (req) => (req.body as { inputs: number[] }).inputs.length } },
    }, async (_req, reply) => {
      settled.push(await reply.rateLimit!.settle(5))
      return { ok: true }
    })
    expect((await app.inject(embed([]))).statusCode).toBe(200)
    // charged 0, settled to nothing: the bucket is as full as before
    expect(settled).toEqual([null])
    expect((await app.inject(embed([1]))).headers.ratelimit).toBe('"10/minute";r=9;t=6')
  })

  it('is free through fastify.rateLimiter.consume(key, limits, 0) too, even on an empty bucket', async () => {
    const app = await appWith(store)
    await app.ready()
    expect(await app.rateLimiter.consume('batch-worker', ['2/minute'], 0)).toMatchObject({ allowed: true, cost: 0, remaining: 2, retryAfterMs: 0 })
    expect(await app.rateLimiter.consume('batch-worker', ['2/minute'], 2)).toMatchObject({ allowed: true, remaining: 0 })
    expect(await app.rateLimiter.consume('batch-worker', ['2/minute'], 0)).toMatchObject({ allowed: true, cost: 0, remaining: 0, retryAfterMs: 0 })
    expect(await app.rateLimiter.consume('batch-worker', ['2/minute'], 1)).toMatchObject({ allowed: false })
  })
})

describe.runIf(hasRedis)('an empty batch on Redis', () => {
  it('writes no bucket', async () => {
    const client: Redis = redisClient()
    const prefix = randomPrefix()
    const app = await appWith({ name: 'redis', options: () => ({ store: { redis: client }, prefix }) })
    app.post('/embed', { config: { rateLimit: { limits: ['10/minute'], cost: (req) => (req.body as { inputs: number[] }).inputs.length } } }, ok)
    app.get('/free', { config: { rateLimit: { limits: ['10/minute'], cost: 0 } } }, ok)
    expect((await app.inject(embed([]))).statusCode).toBe(200)
    expect((await app.inject('/free')).statusCode).toBe(200)
    expect(await app.rateLimiter.consume('worker', ['1/minute'], 0)).toMatchObject({ allowed: true })
    expect(await client.keys(`${prefix}:*`)).toEqual([])
  })
})
