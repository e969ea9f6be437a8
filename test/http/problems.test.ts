import { describe, expect, it } from 'vitest'
import { appWith, ok, storeCases } from '../helpers/app.js'

const rateHeaders = (headers: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(headers).filter(([h]) => h.includes('ratelimit') || h === 'retry-after'))

describe.each(storeCases)('rate-limit fields and bodies on the $name store', (store) => {
  const route = { config: { rateLimit: { limits: ['1/minute', '10/hour'] } } }

  it('headers: \'legacy\' sends X-RateLimit-* of the most restrictive policy only', async () => {
    const app = await appWith(store, { headers: 'legacy' })
    app.get('/p', route, ok)
    expect(rateHeaders((await app.inject('/p')).headers)).toEqual({
      'x-ratelimit-limit': '1', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '60',
    })
    expect(rateHeaders((await app.inject('/p')).headers)).toEqual({
      'x-ratelimit-limit': '1', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '60', 'retry-after': '60',
    })
  })

  it('headers: \'both\' sends draft and legacy fields', async () => {
    const app = await appWith(store, { headers: 'both' })
    app.get('/p', route, ok)
    expect(rateHeaders((await app.inject('/p')).headers)).toEqual({
      'ratelimit-policy': '"1/minute";q=1;w=60, "10/hour";q=10;w=3600',
      ratelimit: '"1/minute";r=0;t=60, "10/hour";r=9;t=360',
      'x-ratelimit-limit': '1', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '60',
    })
  })

  it('headers: false sends none, but a 429 still carries Retry-After', async () => {
    const app = await appWith(store, { headers: false })
    app.get('/p', route, ok)
    expect(rateHeaders((await app.inject('/p')).headers)).toEqual({})
    expect(rateHeaders((await app.inject('/p')).headers)).toEqual({ 'retry-after': '60' })
  })

  it('names every violated policy in the detail and violated-policies', async () => {
    const app = await appWith(store, { global: ['1/hour'] })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.inject('/p')
    const body = (await app.inject('/p')).json()
    expect(body['violated-policies']).toEqual(['1/minute', 'global 1/hour'])
    expect(body.detail).toBe('Limits "1/minute" and "global 1/hour" exceeded: this request costs 1 unit. Retry in 3600 seconds.')
  })

  it('names, in the 503 of reduced capacity, the policies whose scaled capacity the cost exceeds', async () => {
    const app = await appWith(store, { global: ['100/hour'] })
    app.get('/p', { config: { rateLimit: { limits: ['10/minute', { max: 20, per: '1 minute', name: 'wide' }, { max: 6, per: '1 second', name: 'fast' }], cost: 6 } } }, ok)
    app.rateLimiter.setScale(0.5, 'GET /p')
    const res = await app.inject('/p')
    expect(res.statusCode).toBe(503)
    expect(res.headers['retry-after']).toBe('1')
    expect(res.json()).toEqual({
      type: 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
      title: 'Temporary reduced capacity',
      status: 503,
      detail: 'This route admits less than usual for now (limits "10/minute" and "fast"), too little for this request. Retry in 1 second.',
      'violated-policies': ['10/minute', 'fast'],
    })
  })

  it('lets errorResponseBuilder replace the 429 body', async () => {
    const app = await appWith(store, {
      errorResponseBuilder: (req, ctx) => ({ error: 'slow down', wait: ctx.retryAfterSeconds, limits: ctx.violated.map(p => p.name), url: req.url }),
    })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.inject('/p')
    const r = await app.inject('/p')
    expect(r.statusCode).toBe(429)
    expect(r.headers['retry-after']).toBe('60')
    expect(r.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(r.json()).toEqual({ error: 'slow down', wait: 60, limits: ['1/minute'], url: '/p' })
  })
})
