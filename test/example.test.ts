// The example ML API (bench/ml-api), in-process: the README's "run" command serves this.
import type { InjectOptions } from 'fastify'
import { describe, expect, it } from 'vitest'
import { storeCases } from './helpers/app.js'
import { startDemo } from './helpers/demo.js'
// @ts-expect-error plain JavaScript without declarations
import { shadowSetting } from '../bench/ml-api/app.js'
import { hasRedis, randomPrefix } from './helpers/redis.js'

const post = (url: string, payload: object, key?: string): InjectOptions => ({
  method: 'POST', url, payload, headers: key === undefined ? {} : { 'x-api-key': key },
})

describe.each(storeCases)('example ML API on the $name store', (store) => {
  const demo = async () => (await startDemo(store)).app

  it('computes predictions from the model it trained', async () => {
    const app = await demo()
    const setosa = await app.inject(post('/predict', { input: [5.1, 3.5, 1.4, 0.2] }, 'demo-free-key'))
    expect(setosa.statusCode).toBe(200)
    expect(setosa.json().label).toBe('setosa')
    const virginica = await app.inject(post('/predict', { input: [6.7, 3.0, 5.2, 2.3] }, 'demo-free-key'))
    expect(virginica.json().label).toBe('virginica')
    const info = (await app.inject('/model')).json()
    expect(info.trainingAccuracy).toBeGreaterThan(0.9)
  })

  it('answers 401 to an unknown key before charging anything', async () => {
    const app = await demo()
    expect((await app.inject(post('/predict', { input: [5, 3, 1, 0] }, 'stolen'))).statusCode).toBe(401)
    const r = await app.inject(post('/predict', { input: [5, 3, 1, 0] }))
    expect(r.headers.ratelimit).toContain('"20/minute";r=19')
  })

  it('charges batches by size: 413 past what the tier admits, premium admits 5×', async () => {
    const app = await demo()
    const batch = { inputs: Array.from({ length: 25 }, () => [6.7, 3.0, 5.2, 2.3]) }
    const free = await app.inject(post('/predict/batch', batch, 'demo-free-key'))
    expect(free.statusCode).toBe(413)
    const premium = await app.inject(post('/predict/batch', batch, 'demo-premium-key'))
    expect(premium.statusCode).toBe(200)
    expect(premium.json().predictions).toHaveLength(25)
    expect(premium.headers.ratelimit).toContain('"20/minute";r=75')
    // 25 identical inputs are computed once: the charge is settled at 1, the rest refunded
    expect(premium.json().cost).toBe(1)
    const next = await app.inject(post('/predict', { input: [5.1, 3.5, 1.4, 0.2] }, 'demo-premium-key'))
    expect(next.headers.ratelimit).toMatch(/"20\/minute";r=9[89];/)
  })

  it('runs one explain per caller at a time, and says so in RateLimit-Policy', async () => {
    const app = await demo()
    const res = await app.inject(post('/predict/explain', { input: [6.1, 2.8, 4.7, 1.2] }, 'demo-free-key'))
    expect(res.headers['ratelimit-policy']).toContain('"concurrency";q=1;qu="concurrent-requests"')
    expect(res.headers.ratelimit).toContain('"concurrency";r=0')
  })

  it('admits half the inference rate while the model warms up', async () => {
    const { app } = await startDemo(store, {}, randomPrefix(), 60_000)
    const codes = []
    for (let i = 0; i < 12; i++) codes.push((await app.inject(post('/predict', { input: [5.1, 3.5, 1.4, 0.2] }, 'demo-free-key'))).statusCode)
    expect(codes.filter(c => c === 200)).toHaveLength(10)
  })

  it('keeps the health check exempt, and paces the heavy route: early calls held until their slot, then refused', async () => {
    const app = await demo()
    for (let i = 0; i < 5; i++) expect((await app.inject('/health')).headers.ratelimit).toBeUndefined()
    const calls = []
    for (let i = 0; i < 4; i++) calls.push(await app.inject(post('/predict/explain', { input: [6.1, 2.8, 4.7, 1.2] })))
    expect(calls.map(r => r.statusCode)).toEqual([200, 200, 200, 429])
    // '1/second': each call after the first waited for its slot, about a second after the last
    const held = calls.slice(0, 3).map(r => r.json<{ heldMs: number }>().heldMs)
    expect(held[0]).toBe(0)
    for (const ms of held.slice(1)) expect(ms).toBeGreaterThan(500)
    for (const ms of held.slice(1)) expect(ms).toBeLessThanOrEqual(1000)
    // '3/minute' has no slot within the delay: refused at once
    expect(calls[3]!.json<{ 'violated-policies': string[] }>()['violated-policies']).toEqual(['3/minute'])
  })
})

describe.each(storeCases)('the example ML API\'s metrics and OpenAPI document on the $name store', (store) => {
  it('serves Prometheus metrics of what it admitted and refused', async () => {
    const app = (await startDemo(store)).app
    for (let i = 0; i < 4; i++) await app.inject(post('/predict/explain', { input: [6.1, 2.8, 4.7, 1.2] }, 'demo-free-key'))
    await app.inject(post('/predict/batch', { inputs: [[6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]] }, 'demo-premium-key'))
    const r = await app.inject('/metrics')
    expect(r.statusCode).toBe(200)
    expect(r.headers.ratelimit).toBeUndefined()
    expect(r.body).toContain('fastify_gcra_requests_total{route="POST /predict/explain",tier="free",outcome="admitted"} 1')
    expect(r.body).toContain('fastify_gcra_requests_total{route="POST /predict/explain",tier="free",outcome="delayed"} 2')
    expect(r.body).toContain('fastify_gcra_requests_total{route="POST /predict/explain",tier="free",outcome="refused"} 1')
    expect(r.body).toMatch(/^fastify_gcra_delay_seconds_count\{gone="false"\} 2$/m)
    expect(r.body).toContain('fastify_gcra_cost_charged_total{route="POST /predict/batch",tier="premium"} 2')
  })

  it('serves an OpenAPI document with each limited route\'s 429, 413 where a batch can be too large, 503 for reduced capacity, and the rate-limit headers', async () => {
    const app = (await startDemo(store)).app
    const spec = (await app.inject('/documentation/json')).json() as { paths: Record<string, Record<string, { responses: Record<string, { headers?: object }> }>> }
    const statuses = (url: string, method: string) => Object.keys(spec.paths[url]![method]!.responses).sort()
    // pressureScale: any limited route may admit less than usual for a while (503)
    expect(statuses('/predict', 'post')).toEqual(['200', '429', '503'])
    expect(statuses('/predict/batch', 'post')).toEqual(['200', '413', '429', '503'])
    expect(statuses('/predict/explain', 'post')).toEqual(['200', '429', '503'])
    expect(statuses('/model', 'get')).toEqual(['200', '429', '503'])
    const busy = spec.paths['/predict/explain']!.post!.responses['503'] as { content: Record<string, { schema: { properties: { type: { enum: string[] } } } }> }
    expect(busy.content['application/problem+json']!.schema.properties.type.enum).toEqual(['https://iana.org/assignments/http-problem-types#temporary-reduced-capacity'])
    expect(statuses('/health', 'get')).toEqual(['200'])
    expect(Object.keys(spec.paths['/predict']!.post!.responses['429']!.headers!)).toEqual(['RateLimit-Policy', 'RateLimit', 'Retry-After'])
    expect(spec.paths['/metrics']).toBeUndefined()
    expect(spec.paths['/documentation/json']).toBeUndefined()
  })
})

describe('the example ML API in shadow mode (SHADOW)', () => {
  it('reads SHADOW: every route, a list of routes, or none', () => {
    expect(shadowSetting(undefined)).toBe(false)
    expect(shadowSetting('')).toBe(false)
    expect(shadowSetting('0')).toBe(false)
    expect(shadowSetting('1')).toBe(true)
    expect(shadowSetting('all')).toBe(true)
    expect(shadowSetting('/predict/explain, /model')).toEqual(['/predict/explain', '/model'])
  })

  it.each(storeCases)('serves every call of a shadowed route, and counts what enforcement would have refused ($name)', async (store) => {
    const { app } = await startDemo(store, {}, randomPrefix(), 0, ['/predict/explain'])
    const calls = []
    for (let i = 0; i < 5; i++) calls.push(await app.inject(post('/predict/explain', { input: [6.1, 2.8, 4.7, 1.2] }, 'demo-free-key')))
    expect(calls.map(r => r.statusCode)).toEqual([200, 200, 200, 200, 200])
    // nothing held in shadow mode: the second call says what its hold would have been
    expect(calls[1]!.json<{ heldMs: number }>().heldMs).toBeGreaterThan(900)
    const metrics = (await app.inject('/metrics')).body
    expect(metrics).toContain('fastify_gcra_shadow_requests_total{route="POST /predict/explain",tier="free",outcome="admitted"} 1')
    expect(metrics).toContain('fastify_gcra_shadow_requests_total{route="POST /predict/explain",tier="free",outcome="delayed"} 1')
    expect(metrics).toContain('fastify_gcra_shadow_requests_total{route="POST /predict/explain",tier="free",outcome="refused"} 3')
    expect(metrics).not.toContain('fastify_gcra_requests_total{route="POST /predict/explain"')
    // the other routes are enforced
    const predicted = await app.inject(post('/predict', { input: [5.1, 3.5, 1.4, 0.2] }, 'demo-free-key'))
    expect(predicted.statusCode).toBe(200)
    expect((await app.inject('/metrics')).body).toContain('fastify_gcra_requests_total{route="POST /predict",tier="free",outcome="admitted"} 1')
  })
})

describe.runIf(hasRedis)('example ML API instances on one Redis', () => {
  it('share their limits', async () => {
    const prefix = randomPrefix()
    const redis = storeCases.find(s => s.name === 'redis')!
    const [a, b] = await Promise.all([startDemo(redis, {}, prefix), startDemo(redis, {}, prefix)])
    const call = (app: typeof a.app) => app.inject(post('/predict/explain', { input: [6.1, 2.8, 4.7, 1.2] }, 'demo-free-key'))
    const codes = [await call(a.app), await call(b.app), await call(a.app), await call(b.app)].map(r => r.statusCode)
    expect(codes).toEqual([200, 200, 200, 429])
  })
})

describe('npm run demo\'s server process', () => {
  it('says where it listens and which keys to try, serves, and closes cleanly on SIGTERM', async () => {
    const { spawn } = await import('node:child_process')
    const child = spawn(process.execPath, ['bench/ml-api/server.js'], { env: { ...process.env, PORT: '0', REDIS_URL: '', WARMUP_MS: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d })
    const kill = setTimeout(() => child.kill('SIGKILL'), 20_000)
    try {
      const deadline = Date.now() + 15_000
      // the last line it prints: every line before it has arrived
      while (!out.includes('Ctrl-C stops it.') && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
      const base = /listening on (http:\/\/\S+)/.exec(out)![1]!
      expect(out).toContain('demo-free-key  (free)')
      expect(out).toContain('demo-premium-key  (premium)')
      const r = await fetch(`${base}/predict`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': 'demo-premium-key' }, body: JSON.stringify({ input: [5.1, 3.5, 1.4, 0.2] }) })
      expect(r.status).toBe(200)
      expect(r.headers.get('ratelimit-policy')).toContain('"20/minute";q=100;w=60')
      expect((await fetch(`${base}/metrics`)).status).toBe(200)
      expect(out).toContain('/documentation/json')
      const exited = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
      expect(out).toContain('SIGTERM: closed cleanly')
    } finally {
      clearTimeout(kill)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }, 30_000)
})

