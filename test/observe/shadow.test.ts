/**
 * Shadow mode as it is observed: counted in shadow_requests_total (never requests_total)
 * by the outcome enforcement would have given, logged as "would be refused", and with
 * `delay`, reported as held (`delayedMs`, outcome delayed) but never held.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Redis } from 'ioredis'
import { afterEach, describe, expect, it, vi } from 'vitest'
import gcra from '../../lib/index.js'
import { appWith, newApp, storeCases, type LogLine } from '../helpers/app.js'
import { freePort } from '../setup/redis.js'
import { sample } from '../helpers/metrics.js'

async function scrape (app: FastifyInstance): Promise<string> {
  const r = await app.inject('/metrics')
  expect(r.statusCode).toBe(200)
  return r.body
}

const OUTCOMES = ['admitted', 'refused', 'too_large', 'concurrency_refused', 'delayed', 'reduced_capacity', 'store_unavailable'] as const

/** Counts of a route by outcome in one counter; absent outcomes left out. */
function counts (text: string, counter: string, route: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const outcome of OUTCOMES) {
    const value = sample(text, `fastify_gcra_${counter}`, { route, tier: 'none', outcome })
    if (value !== undefined) out[outcome] = value
  }
  return out
}

const lines = (logs: LogLine[]) => logs.filter(l => l.msg.startsWith('fastify-gcra: request'))
const tick = (ms = 30): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

afterEach(() => {
  vi.useRealTimers()
})

describe.each(storeCases)('shadow mode observed on the $name store', (store) => {
  it('counts in shadow_requests_total by outcome and logs "would be refused"; its enforced twin counts in requests_total', async () => {
    const app = await appWith(store, { metrics: true, logRefusals: true })
    let release!: () => void
    const held = new Promise<void>(resolve => { release = resolve })
    for (const mode of ['shadow', 'enforced']) {
      app.post(`/${mode}`, { config: { rateLimit: { limits: ['5/minute'], cost: (req) => (req.body as { n: number }).n, shadow: mode === 'shadow' } } }, async () => ({ ok: true }))
    }
    app.get('/slot', { config: { rateLimit: { limits: ['5/minute'], concurrency: 1, shadow: true } } }, async (req: FastifyRequest) => {
      if (req.headers['x-hold'] === '1') await held
      return { ok: true }
    })
    await app.ready()

    const codes: Record<string, number[]> = { shadow: [], enforced: [] }
    for (const mode of ['shadow', 'enforced']) {
      for (const n of [2, 9, 3, 1]) codes[mode]!.push((await app.inject({ method: 'POST', url: `/${mode}`, payload: { n } })).statusCode)
    }
    expect(codes).toEqual({ shadow: [200, 200, 200, 200], enforced: [200, 413, 200, 429] })
    const first = app.inject({ url: '/slot', headers: { 'x-hold': '1' } })
    await tick()
    expect((await app.inject('/slot')).statusCode).toBe(200)
    release()
    expect((await first).statusCode).toBe(200)

    const text = await scrape(app)
    expect(counts(text, 'shadow_requests_total', 'POST /shadow')).toEqual({ admitted: 2, too_large: 1, refused: 1 })
    expect(counts(text, 'requests_total', 'POST /shadow')).toEqual({})
    expect(counts(text, 'requests_total', 'POST /enforced')).toEqual({ admitted: 2, too_large: 1, refused: 1 })
    expect(counts(text, 'shadow_requests_total', 'POST /enforced')).toEqual({})
    expect(counts(text, 'shadow_requests_total', 'GET /slot')).toEqual({ admitted: 1, concurrency_refused: 1 })
    expect(counts(text, 'requests_total', 'GET /slot')).toEqual({})
    // what was charged, the same for both twins; nothing for a would-be refusal
    expect(sample(text, 'fastify_gcra_cost_charged_total', { route: 'POST /shadow', tier: 'none' })).toBe(5)
    expect(sample(text, 'fastify_gcra_cost_charged_total', { route: 'POST /enforced', tier: 'none' })).toBe(5)
    expect(sample(text, 'fastify_gcra_cost_charged_total', { route: 'GET /slot', tier: 'none' })).toBe(1)

    const logged = lines(app.logs)
    const shadowed = logged.filter(l => (l.rateLimit as { route: string }).route !== 'POST /enforced')
    expect(shadowed.map(l => l.msg)).toEqual([
      'fastify-gcra: request would be refused (too_large), served in shadow mode',
      'fastify-gcra: request would be refused (refused), served in shadow mode',
      'fastify-gcra: request would be refused (concurrency_refused), served in shadow mode',
    ])
    expect(shadowed.map(l => l.rateLimit)).toMatchObject([
      { shadow: true, outcome: 'too_large', route: 'POST /shadow', statusCode: 200, cost: 9, maxCost: 5 },
      { shadow: true, outcome: 'refused', route: 'POST /shadow', statusCode: 200, cost: 1, policies: ['5/minute'] },
      { shadow: true, outcome: 'concurrency_refused', route: 'GET /slot', statusCode: 200, policies: ['concurrency'] },
    ])
    const enforced = logged.filter(l => (l.rateLimit as { route: string }).route === 'POST /enforced')
    expect(enforced.map(l => l.msg)).toEqual(['fastify-gcra: request refused (too_large)', 'fastify-gcra: request refused (refused)'])
    expect(enforced.map(l => l.rateLimit)).toMatchObject([{ statusCode: 413 }, { statusCode: 429 }])
    for (const line of enforced) expect(line.rateLimit).not.toHaveProperty('shadow')
  })

  it('with delay, never holds a request: delayedMs and outcome delayed say what enforcement would have done', async () => {
    // the memory store reads Date.now(): frozen, its decisions are exact; Redis has its own clock
    if (store.name === 'memory') {
      vi.useFakeTimers({ toFake: ['Date'] })
      vi.setSystemTime(1_700_000_000_000)
    }
    const app = await appWith(store, { metrics: true })
    for (const mode of ['shadow', 'enforced']) {
      app.get(`/${mode}`, { config: { rateLimit: { limits: ['2/second'], delay: '1s', shadow: mode === 'shadow' } } }, async req => ({ rl: req.rateLimit }))
    }
    await app.ready()
    // D = 1 s (2 at once), T = 500 ms: the 3rd and 4th fit within the delay, held 500 and 1000 ms; the 5th does not
    const holds = [0, 0, 500, 1000, 0]
    const near = (got: number[]) => store.name === 'memory'
      ? expect(got).toEqual(holds)
      : got.forEach((ms, i) => { expect(ms).toBeLessThanOrEqual(holds[i]!); expect(ms).toBeGreaterThan(holds[i]! - 200) })

    const started = performance.now()
    const shadow = []
    for (let i = 0; i < 5; i++) shadow.push(await app.inject('/shadow'))
    expect(performance.now() - started).toBeLessThan(300)
    expect(shadow.map(r => r.statusCode)).toEqual([200, 200, 200, 200, 200])
    const rl = shadow.map(r => r.json<{ rl: { allowed: boolean, delayedMs: number, shadow: boolean } }>().rl)
    expect(rl.map(r => r.allowed)).toEqual([true, true, true, true, false])
    expect(rl.map(r => r.shadow)).toEqual([true, true, true, true, true])
    near(rl.map(r => r.delayedMs))
    expect(shadow[4]!.headers['retry-after']).toBeUndefined()

    // enforced, the same requests are held (and the 5th refused)
    const enforced = await Promise.all(Array.from({ length: 5 }, () => app.inject('/enforced')))
    expect(enforced.map(r => r.statusCode)).toEqual([200, 200, 200, 200, 429])
    near([...enforced.slice(0, 4).map(r => r.json<{ rl: { delayedMs: number } }>().rl.delayedMs), 0])
    // on a frozen clock, the fields too are the same, request by request
    if (store.name === 'memory') expect(shadow.map(r => r.headers.ratelimit)).toEqual(enforced.map(r => r.headers.ratelimit))

    const text = await scrape(app)
    expect(counts(text, 'shadow_requests_total', 'GET /shadow')).toEqual({ admitted: 2, delayed: 2, refused: 1 })
    expect(counts(text, 'requests_total', 'GET /shadow')).toEqual({})
    expect(counts(text, 'requests_total', 'GET /enforced')).toEqual({ admitted: 2, delayed: 2, refused: 1 })
    // a delayed shadow request was charged like a held one
    expect(sample(text, 'fastify_gcra_cost_charged_total', { route: 'GET /shadow', tier: 'none' })).toBe(4)
    // only the two enforced requests were held
    expect(sample(text, 'fastify_gcra_delay_seconds_count', { gone: 'false' })).toBe(2)
    expect(sample(text, 'fastify_gcra_delayed_requests')).toBe(0)
  })

  it('serves a would-be 503 (reduced scale, the route\'s capacity), charges nothing, and request.rateLimit says it would be refused', async () => {
    const app = await appWith(store, { metrics: true })
    let release!: () => void
    const held = new Promise<void>(resolve => { release = resolve })
    const seen = async (req: FastifyRequest) => ({ rl: req.rateLimit })
    // at half scale the bucket holds 5: a cost of 8 fits only at full scale
    app.get('/scaled', { config: { rateLimit: { limits: ['10/minute'], cost: 8, scale: () => 0.5, scope: 'scaled', shadow: true } } }, seen)
    app.get('/busy', { config: { rateLimit: { concurrency: { route: 1 }, shadow: true } } }, async (req) => {
      if (req.headers['x-hold'] === '1') await held
      return seen(req)
    })
    await app.ready()
    const scaled = await app.inject('/scaled')
    const first = app.inject({ url: '/busy', headers: { 'x-hold': '1' }, remoteAddress: '10.0.0.1' })
    await tick()
    const busy = await app.inject({ url: '/busy', remoteAddress: '10.0.0.2' })
    release()
    expect((await first).statusCode).toBe(200)
    for (const r of [scaled, busy]) {
      expect(r.statusCode).toBe(200)
      expect(r.headers['retry-after']).toBeUndefined()
    }
    expect(scaled.headers['ratelimit-policy']).toBe('"10/minute";q=5;w=60')
    expect((await app.rateLimiter.peek('127.0.0.1', ['10/minute'], { scope: 'scaled' })).remaining).toBe(10)
    const text = await scrape(app)
    expect(counts(text, 'shadow_requests_total', 'GET /scaled')).toEqual({ reduced_capacity: 1 })
    expect(counts(text, 'shadow_requests_total', 'GET /busy')).toEqual({ admitted: 1, reduced_capacity: 1 })
    // the handler is told, as for every other would-be refusal
    expect([scaled.json().rl, busy.json().rl]).toMatchObject([{ allowed: false, shadow: true }, { allowed: false, shadow: true }])
  })
})

describe('shadow mode with a store that fails', () => {
  it('serves a would-be 503 under onStoreError: \'deny\', and request.rateLimit says it would be refused', async () => {
    const client = new Redis({ port: await freePort(), lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    const app = newApp()
    app.addHook('onClose', async () => { client.disconnect() })
    await app.register(gcra, { store: { redis: client }, storeTimeoutMs: 50, onStoreError: 'deny', shadow: true, metrics: true, logRefusals: true })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, async req => ({ rl: req.rateLimit }))
    await app.ready()
    const r = await app.inject('/p')
    expect(r.statusCode).toBe(200)
    expect(r.headers['retry-after']).toBeUndefined()
    expect(counts(await scrape(app), 'shadow_requests_total', 'GET /p')).toEqual({ store_unavailable: 1 })
    expect(lines(app.logs).map(l => l.msg)).toEqual(['fastify-gcra: request would be refused (store_unavailable), served in shadow mode'])
    expect(r.json().rl).toMatchObject({ allowed: false, shadow: true })
  })
})
