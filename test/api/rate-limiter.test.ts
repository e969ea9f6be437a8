/** `fastify.rateLimiter`: consume, peek, reset and scopes outside HTTP. */
import { describe, expect, it } from 'vitest'
import { FST_GCRA_INVALID_COST, FST_GCRA_INVALID_OPTION } from '../../lib/index.js'
import { appWith, ok, statuses, storeCases } from '../helpers/app.js'

describe.each(storeCases)('fastify.rateLimiter on the $name store', (store) => {
  it('consumes, peeks and resets outside HTTP', async () => {
    const app = await appWith(store)
    await app.ready()
    const limiter = app.rateLimiter
    const first = await limiter.consume('socket-1', ['3/minute'], 2)
    expect(first).toMatchObject({ allowed: true, remaining: 1, cost: 2, retryAfterMs: 0, tier: null })
    const peek = await limiter.peek('socket-1', ['3/minute'])
    expect(peek).toMatchObject({ allowed: true, remaining: 1 })
    const refused = await limiter.consume('socket-1', ['3/minute'], 2)
    expect(refused).toMatchObject({ allowed: false, remaining: 1 })
    // 20 s after the first charge, less the milliseconds this test took
    expect(refused.retryAfterMs).toBeGreaterThan(19_000)
    expect(refused.retryAfterMs).toBeLessThanOrEqual(20_000)
    await limiter.reset('socket-1')
    expect(await limiter.consume('socket-1', ['3/minute'], 3)).toMatchObject({ allowed: true, remaining: 0 })
    expect(await limiter.consume('socket-1', ['3/minute'], 4)).toMatchObject({ allowed: false, retryAfterMs: Infinity, maxCost: 3 })
  })

  it('shares a route\'s bucket through its scope, and reset frees the route again', async () => {
    const app = await appWith(store, { global: ['50/hour'] })
    app.post('/chat', { config: { rateLimit: { limits: ['2/minute'], scope: 'chat' } } }, ok)
    await app.ready()
    const ip = '127.0.0.1'
    expect((await app.rateLimiter.consume(ip, ['2/minute'], 1, { scope: 'chat', global: true })).allowed).toBe(true)
    expect(await statuses(app, 2, { method: 'POST', url: '/chat' })).toEqual([200, 429])
    const peek = await app.rateLimiter.peek(ip, ['2/minute'], { scope: 'chat', global: true })
    expect(peek.policies.map(p => [p.name, p.remaining])).toEqual([['2/minute', 0], ['global 50/hour', 48]])
    await app.rateLimiter.reset(ip)
    expect(await statuses(app, 1, { method: 'POST', url: '/chat' })).toEqual([200])
  })

  it('reads the state without charging for a cost of 0, even from an empty bucket', async () => {
    const app = await appWith(store)
    await app.ready()
    const limiter = app.rateLimiter
    expect(await limiter.consume('ws-1', ['3/minute', '10/hour'], 0)).toMatchObject({ allowed: true, cost: 0, remaining: 3, retryAfterMs: 0, resetMs: 0 })
    expect(await limiter.consume('ws-1', ['3/minute', '10/hour'], 3)).toMatchObject({ allowed: true, remaining: 0 })
    const free = await limiter.consume('ws-1', ['3/minute', '10/hour'], 0)
    expect(free).toMatchObject({ allowed: true, cost: 0, remaining: 0, retryAfterMs: 0 })
    expect(free.policies.map(p => [p.name, p.remaining])).toEqual([['3/minute', 0], ['10/hour', 7]])
    // the free consumes charged nothing: exactly 7 of the hour are left, 0 of the minute
    expect(await limiter.peek('ws-1', ['3/minute', '10/hour'])).toMatchObject({ allowed: false })
    expect((await limiter.peek('ws-1', ['3/minute', '10/hour'])).policies.map(p => p.remaining)).toEqual([0, 7])
  })

  it('applies tier multipliers', async () => {
    const app = await appWith(store, { tiers: { premium: 5 } })
    await app.ready()
    expect(await app.rateLimiter.consume('u', ['1/minute'], 5, { tier: 'premium' })).toMatchObject({ allowed: true, remaining: 0, tier: 'premium' })
  })

  it('rejects bad arguments with coded errors', async () => {
    const app = await appWith(store)
    await app.ready()
    await expect(app.rateLimiter.consume('u', ['10/mintue'])).rejects.toThrow(FST_GCRA_INVALID_OPTION)
    await expect(app.rateLimiter.consume('u', [])).rejects.toThrow(/at least one limit/)
    await expect(app.rateLimiter.consume('u', [], 1, { global: true })).rejects.toThrow(/at least one limit/)
    // a refused definition leaves its scope free for a valid one
    await expect(app.rateLimiter.consume('u', [], 1, { scope: 'ws' })).rejects.toThrow(/at least one limit/)
    expect((await app.rateLimiter.consume('u', ['1/minute'], 1, { scope: 'ws' })).allowed).toBe(true)
    await expect(app.rateLimiter.consume('u', ['1/minute'], -1)).rejects.toThrow(FST_GCRA_INVALID_COST)
    await expect(app.rateLimiter.consume('u', ['1/minute'], Number.NaN)).rejects.toThrow('fastify-gcra: the cost of rateLimiter.consume() must be a finite number >= 0, got NaN')
    await expect(app.rateLimiter.consume('u', ['1/minute'], '2' as never)).rejects.toThrow(FST_GCRA_INVALID_COST)
    await expect(app.rateLimiter.consume(42 as never, ['1/minute'])).rejects.toThrow(/key resolver must return/)
  })
})
