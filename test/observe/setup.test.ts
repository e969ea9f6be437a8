import { describe, expect, it } from 'vitest'
import { appWith, memoryCase, ok } from '../helpers/app.js'

describe('the observers\' wiring', () => {
  it('adds no route and watches nothing when metrics and refusal logs are off', async () => {
    const app = await appWith(memoryCase, { limits: ['1/minute'] })
    app.get('/a', ok)
    await app.ready()
    expect(app.hasRoute({ method: 'GET', url: '/metrics' })).toBe(false)
    await app.inject('/a')
    expect((await app.inject('/a')).statusCode).toBe(429)
    expect(app.logs.filter(l => l.msg.startsWith('fastify-gcra: request refused'))).toEqual([])
  })

  it('serves the metrics on the chosen route, exempt from the default limits and without HEAD', async () => {
    const app = await appWith(memoryCase, { limits: ['1/minute'], metrics: { route: '/ops/metrics' } })
    app.get('/a', ok)
    await app.ready()
    await app.inject('/a')
    await app.inject('/a')
    for (let i = 0; i < 3; i++) {
      const scrape = await app.inject('/ops/metrics')
      expect(scrape.statusCode).toBe(200)
      expect(scrape.headers).not.toHaveProperty('ratelimit')
      expect(scrape.body).toContain('fastify_gcra_requests_total{route="GET /a",tier="none",outcome="refused"} 1')
    }
    expect(app.hasRoute({ method: 'HEAD', url: '/ops/metrics' })).toBe(false)
  })

  it('feeds metrics and refusal logs from the same observation', async () => {
    const app = await appWith(memoryCase, { metrics: true, logRefusals: true })
    app.get('/a', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.ready()
    await app.inject('/a')
    await app.inject('/a')
    expect(app.logs.filter(l => l.msg === 'fastify-gcra: request refused (refused)')).toHaveLength(1)
    expect((await app.inject('/metrics')).body).toContain('fastify_gcra_requests_total{route="GET /a",tier="none",outcome="admitted"} 1')
  })
})
