/**
 * Adaptive limits: a scale factor of admitted rates from `setScale`, the `scale` options
 * and `pressureScale` with @fastify/under-pressure.
 */
import underPressure from '@fastify/under-pressure'
import { describe, expect, it } from 'vitest'
import gcra, { FST_GCRA_INVALID_OPTION } from '../../lib/index.js'
import { toBucket } from '../../lib/gcra/math.js'
import { appWith, newApp, ok, statuses, storeCases } from '../helpers/app.js'

const admitted = async (app: Parameters<typeof statuses>[0], n: number, request: Parameters<typeof statuses>[2]): Promise<number> =>
  (await statuses(app, n, request)).filter(s => s === 200).length

describe.each(storeCases)('scaling admitted rates ($name)', (store) => {
  it('setScale lowers max and burst of every route, as a tier multiplier would; 1 undoes it', async () => {
    const app = await appWith(store)
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    app.rateLimiter.setScale(0.5)
    expect(app.rateLimiter.getScale()).toBe(0.5)
    const first = await app.inject('/a')
    expect(first.headers['ratelimit-policy']).toBe('"10/minute";q=5;w=60')
    expect(first.headers.ratelimit).toBe('"10/minute";r=4;t=12')
    expect(await admitted(app, 10, '/a')).toBe(4)
    app.rateLimiter.setScale(1)
    expect(await admitted(app, 12, { url: '/a', remoteAddress: '10.9.9.9' })).toBe(10)
    // a bucket is time: 5 requests at half the rate used the whole minute of the caller's bucket
    expect(await admitted(app, 1, '/a')).toBe(0)
  })

  it('scales one route or one named scope, not the others', async () => {
    const app = await appWith(store)
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    app.get('/b', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    app.get('/c', { config: { rateLimit: { limits: ['10/minute'], scope: 'models' } } }, ok)
    app.rateLimiter.setScale(0.2, 'GET /a')
    app.rateLimiter.setScale(0.3, 'models')
    expect(app.rateLimiter.getScale('GET /a')).toBe(0.2)
    expect(await admitted(app, 12, '/a')).toBe(2)
    expect(await admitted(app, 12, '/b')).toBe(10)
    expect(await admitted(app, 12, '/c')).toBe(3)
  })

  it('multiplies the plugin\'s and the route\'s scale functions per request, with tiers', async () => {
    let warm = 0.5
    const app = await appWith(store, {
      tiers: { premium: 4 },
      tier: (r) => r.headers['x-tier'] as string | undefined,
      scale: () => warm,
    })
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'], scale: () => 0.5 } } }, ok)
    // 10 × 0.5 × 0.5 = 2.5 → a burst of 2 whole requests
    expect(await admitted(app, 6, { url: '/a', remoteAddress: '10.0.0.1' })).toBe(2)
    // premium: 10 × 4 × 0.25 = 10
    expect(await admitted(app, 12, { url: '/a', remoteAddress: '10.0.0.2', headers: { 'x-tier': 'premium' } })).toBe(10)
    warm = 1
    const res = await app.inject({ url: '/a', remoteAddress: '10.0.0.3' })
    expect(res.headers['ratelimit-policy']).toBe('"10/minute";q=5;w=60')
  })

  it('uses the scaled buckets exactly: T and D of max · multiplier · scale', async () => {
    const app = await appWith(store)
    app.get('/a', { config: { rateLimit: { limits: [{ max: 7, per: '1 minute', burst: 3 }], scale: () => 0.37 } } }, ok)
    const res = await app.inject('/a')
    const { intervalUs: T, capacityUs: D } = toBucket(7, 60_000, 3, 0.37)
    // 3 × 0.37 = 1.11 units of burst: one request now, the next when TAT − now ≤ D − T
    expect(res.headers.ratelimit).toBe(`"7/minute burst 3";r=0;t=${Math.ceil(Math.ceil((2 * T - D) / 1000) / 1000)}`)
    // q/w is 2.59 a minute exactly: the shortest whole window with a whole q (≥ 1.11) is 100 minutes
    expect(res.headers['ratelimit-policy']).toBe('"7/minute burst 3";q=259;w=6000')
    const refused = await app.inject('/a')
    expect(refused.statusCode).toBe(429)
  })

  it('a scale function that returns a non-number is the server\'s bug (500); out of range is kept in (0, 1] with one warning', async () => {
    const app = await appWith(store)
    app.get('/bad', { config: { rateLimit: { limits: ['10/minute'], scale: () => 'half' as unknown as number } } }, ok)
    app.get('/big', { config: { rateLimit: { limits: ['10/minute'], scale: () => 3 } } }, ok)
    const bad = await app.inject('/bad')
    expect(bad.statusCode).toBe(500)
    expect(app.logs.some(l => l.err?.code === 'FST_GCRA_INVALID_SCALE')).toBe(true)
    expect(await admitted(app, 12, '/big')).toBe(10)
    expect(app.logs.filter(l => /outside \(0, 1\]/.test(l.msg))).toHaveLength(1)
  })
})

describe.each(storeCases)('a scale and the global limits ($name)', (store) => {
  it('slows the route\'s own limits; the global ones are quotas, advertised and charged at scale 1', async () => {
    const app = await appWith(store, { global: ['100/hour'] })
    app.get('/scaled', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    app.get('/plain', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    app.rateLimiter.setScale(0.5, 'GET /scaled')
    const plain = await app.inject('/plain')
    const scaled = await app.inject('/scaled')
    expect(plain.headers['ratelimit-policy']).toBe('"10/minute";q=10;w=60, "global 100/hour";q=100;w=3600')
    expect(scaled.headers['ratelimit-policy']).toBe('"10/minute";q=5;w=60, "global 100/hour";q=100;w=3600')
    expect(scaled.headers.ratelimit).toMatch(/^"10\/minute";r=4;t=12, "global 100\/hour";r=98;t=\d+$/)
    // N requests on the scaled route spend N units of the global quota, not 2N
    expect(await admitted(app, 4, '/scaled')).toBe(4)
    expect((await app.inject('/plain')).headers.ratelimit).toMatch(/"global 100\/hour";r=93;/)
  })

  it('a route\'s scale function with a tier: the tier\'s multiplier on both, the scale on the route\'s own only', async () => {
    const app = await appWith(store, { global: ['20/hour'], tiers: { pro: 2 }, tier: () => 'pro' })
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'], scale: () => 0.5 } } }, ok)
    const res = await app.inject('/a')
    expect(res.headers['ratelimit-policy']).toBe('"10/minute";q=10;w=60, "global 20/hour";q=40;w=3600')
    expect(res.headers.ratelimit).toMatch(/^"10\/minute";r=9;t=6, "global 20\/hour";r=39;t=\d+$/)
    expect(await admitted(app, 12, '/a')).toBe(9)
    expect((await app.inject('/a')).headers.ratelimit).toMatch(/"global 20\/hour";r=30;/)
  })

  it('a cost beyond the global capacity stays a 413 at any scale; one beyond the scaled route limit is a 503 naming it', async () => {
    const app = await appWith(store, { global: [{ max: 6, per: '1 hour', name: 'daily-ish' }] })
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'], cost: (r) => Number(r.headers['x-cost']) } } }, ok)
    app.rateLimiter.setScale(0.4, 'GET /a')
    const reduced = await app.inject({ url: '/a', headers: { 'x-cost': '5' } })
    expect(reduced.statusCode).toBe(503)
    expect(reduced.json()['violated-policies']).toEqual(['10/minute'])
    expect(reduced.headers['ratelimit-policy']).toBe('"10/minute";q=4;w=60, "daily-ish";q=6;w=3600')
    expect((await app.inject({ url: '/a', headers: { 'x-cost': '7' } })).statusCode).toBe(413)
    expect((await app.inject({ url: '/a', headers: { 'x-cost': '4' } })).statusCode).toBe(200)
  })
})

describe('setScale and pressureScale are checked', () => {
  it('setScale refuses factors outside (0, 1] and unknown targets', async () => {
    const app = newApp()
    await app.register(gcra)
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    for (const bad of [0, -1, 1.5, Number.NaN, '0.5']) expect(() => app.rateLimiter.setScale(bad as number)).toThrow(FST_GCRA_INVALID_OPTION)
    expect(() => app.rateLimiter.setScale(0.5, 'GET /nope')).toThrow("expected a limited route ('POST /predict') or a scope name, got 'GET /nope'")
  })

  it('pressureScale without @fastify/under-pressure fails at start-up', async () => {
    const app = newApp()
    await app.register(gcra, { pressureScale: 0.5 })
    await expect(app.ready()).rejects.toThrow('options.pressureScale: expected @fastify/under-pressure registered on this instance')
  })

  it('pressureScale applies while under-pressure says the process is under pressure', async () => {
    const app = newApp()
    // a heap limit of 1 byte: under pressure from the first sample on; the handler lets requests through
    await app.register(underPressure, { maxHeapUsedBytes: 1, sampleInterval: 10, pressureHandler: () => undefined })
    await app.register(gcra, { pressureScale: 0.3 })
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    await app.ready()
    const deadline = Date.now() + 2000
    while (!app.isUnderPressure() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    expect(app.isUnderPressure()).toBe(true)
    expect(await admitted(app, 10, '/a')).toBe(3)
  })
})

describe.each(storeCases)('a scale too low for a cost ($name)', (store) => {
  it('is a 503 (temporary reduced capacity) when the cost fits at full scale, and still a 413 when it never fits', async () => {
    const app = await appWith(store, { metrics: true })
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'], cost: 5 } } }, ok)
    app.get('/huge', { config: { rateLimit: { limits: ['10/minute'], cost: 20 } } }, ok)
    app.rateLimiter.setScale(0.3)
    const reduced = await app.inject('/a')
    expect(reduced.statusCode).toBe(503)
    expect(reduced.headers['retry-after']).toBe('1')
    expect(reduced.json().type).toBe('https://iana.org/assignments/http-problem-types#temporary-reduced-capacity')
    expect(reduced.json()['violated-policies']).toEqual(['10/minute'])
    expect((await app.inject('/huge')).statusCode).toBe(413)
    app.rateLimiter.setScale(1)
    expect((await app.inject('/a')).statusCode).toBe(200)
    const metrics = (await app.inject('/metrics')).body
    expect(metrics).toContain('fastify_gcra_requests_total{route="GET /a",tier="none",outcome="reduced_capacity"} 1')
    expect(metrics).toContain('fastify_gcra_requests_total{route="GET /huge",tier="none",outcome="too_large"} 1')
  })
})

describe('a 413 under a scale below 1', () => {
  it('names the largest cost the tier admits at full scale', async () => {
    const app = newApp()
    await app.register(gcra)
    app.get('/a', { config: { rateLimit: { limits: ['10/minute'], cost: 11 } } }, ok)
    app.rateLimiter.setScale(0.25)
    const res = await app.inject('/a')
    expect(res.statusCode).toBe(413)
    expect(res.json()['max-cost']).toBe(10)
    expect(res.json().detail).toContain('the largest cost is 10')
  })
})
