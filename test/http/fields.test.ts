/**
 * The rate-limit fields say the truth: through the plugin, after random request sequences,
 * each policy's `r` is at most its `q` and `X-RateLimit-Remaining` at most
 * `X-RateLimit-Limit`; and every field the plugin sends, on every kind of answer, parses
 * as RFC 9651 structured fields (`structured-headers`, the parser the client uses).
 */
import fc from 'fast-check'
import Fastify, { type LightMyRequestResponse } from 'fastify'
import { isInnerList, parseItem, parseList, type Item } from 'structured-headers'
import { afterEach, describe, expect, it, vi } from 'vitest'
import gcra from '../../lib/index.js'
import type { LimitObject } from '../../lib/limits/limit.js'
import { appWith, memoryCase, ok } from '../helpers/app.js'

/** `RateLimit-Policy` or `RateLimit` as name → parameters, parsed by `structured-headers`. */
function items (field: unknown): Map<string, Map<string, unknown>> {
  const out = new Map<string, Map<string, unknown>>()
  if (field === undefined) return out
  for (const member of parseList(String(field))) {
    if (isInnerList(member)) throw new Error(`an inner list in ${String(field)}`)
    const [name, params] = member as Item
    expect(typeof name).toBe('string')
    out.set(name as string, params as Map<string, unknown>)
  }
  return out
}

/** Every rate-limit field of a response, checked for what it must say; returns the policy items. */
function checkFields (res: LightMyRequestResponse): Map<string, Map<string, unknown>> {
  const policies = items(res.headers['ratelimit-policy'])
  const states = items(res.headers.ratelimit)
  for (const [name, params] of policies) {
    const q = params.get('q')
    expect(Number.isInteger(q), `q of ${name}`).toBe(true)
    if (params.has('w')) expect(Number.isInteger(params.get('w')) && (params.get('w') as number) >= 1, `w of ${name}`).toBe(true)
    else expect(params.get('qu')).toBe('concurrent-requests')
  }
  for (const [name, params] of states) {
    const r = params.get('r') as number
    expect(Number.isInteger(r) && r >= 0).toBe(true)
    if (params.has('t')) expect(Number.isInteger(params.get('t'))).toBe(true)
    expect(policies.has(name), `${name} in RateLimit-Policy`).toBe(true)
    expect(r, `r ≤ q for ${name}`).toBeLessThanOrEqual(policies.get(name)!.get('q') as number)
  }
  if (res.headers['retry-after'] !== undefined) {
    const [seconds] = parseItem(String(res.headers['retry-after']))
    expect(Number.isInteger(seconds) && (seconds as number) >= 1).toBe(true)
  }
  if (res.headers['x-ratelimit-limit'] !== undefined) {
    const [limit, remaining, reset] = ['limit', 'remaining', 'reset'].map(k => parseItem(String(res.headers[`x-ratelimit-${k}`]))[0] as number)
    expect([limit, remaining, reset].every(Number.isInteger)).toBe(true)
    expect(remaining).toBeLessThanOrEqual(limit!)
  }
  return policies
}

const limitObject: fc.Arbitrary<Omit<LimitObject, 'name'>> = fc.record({
  max: fc.integer({ min: 1, max: 12 }),
  per: fc.constantFrom(250, 500, 1000, 1500, 7000, 60_000),
  burst: fc.integer({ min: 1, max: 25 }),
})

const scenario = fc.record({
  own: fc.array(limitObject, { minLength: 1, maxLength: 2 }),
  global: fc.option(limitObject, { nil: undefined }),
  multiplier: fc.constantFrom(1, 0.5, 1.5, 2.5, 1.1, 0.1 * 3),
  scale: fc.constantFrom(1, 0.5, 0.37, 0.1, 0.99),
  steps: fc.array(fc.record({
    dtMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3000 })),
    cost: fc.constantFrom(0, 1, 1, 1, 2, 3),
    tiered: fc.boolean(),
  }), { minLength: 1, maxLength: 30 }),
})

describe('the fields the plugin sends (properties, memory store)', () => {
  afterEach(() => { vi.useRealTimers() })

  it('never say r > q, nor X-RateLimit-Remaining > X-RateLimit-Limit', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    let now = Date.UTC(2026, 0, 1)
    await fc.assert(fc.asyncProperty(scenario, async ({ own, global, multiplier, scale, steps }) => {
      const app = Fastify()
      try {
        await app.register(gcra, {
          store: 'memory',
          headers: 'both',
          global: global === undefined ? [] : [{ ...global, name: 'g' }],
          tiers: { t: multiplier },
          tier: (r) => r.headers['x-tier'] as string | undefined,
        })
        const limits = own.map((l, i) => ({ ...l, name: `own ${i}` }))
        app.get('/r', { config: { rateLimit: { limits, cost: (r) => Number(r.headers['x-cost']), scale: () => scale } } }, ok)
        for (const step of steps) {
          now += step.dtMs
          vi.setSystemTime(now)
          const res = await app.inject({ url: '/r', headers: { 'x-cost': String(step.cost), ...(step.tiered ? { 'x-tier': 't' } : {}) } })
          expect([200, 413, 429, 503]).toContain(res.statusCode)
          checkFields(res)
        }
      } finally {
        await app.close()
      }
    }), { numRuns: 80 })
  })
})

describe('every field the plugin sends parses as an RFC 9651 structured field (structured-headers)', () => {
  it('on admitted, refused (429), too large (413) and reduced-capacity (503) answers, with problem bodies naming sent policies', async () => {
    const app = await appWith(memoryCase, { headers: 'both', global: ['1000/day'] })
    app.get('/a', { config: { rateLimit: { limits: [{ max: 3, per: '500ms' }, { max: 10, per: '1 minute', burst: 20 }] } } }, ok)
    app.get('/cost', { config: { rateLimit: { limits: ['10/minute'], cost: (r) => Number(r.headers['x-cost']) } } }, ok)
    const seen = new Set<number>()
    for (let i = 0; i < 5; i++) {
      const res = await app.inject('/a')
      seen.add(res.statusCode)
      const policies = checkFields(res)
      if (res.statusCode === 429) {
        for (const name of res.json()['violated-policies'] as string[]) expect(policies.has(name)).toBe(true)
      }
    }
    const tooLarge = await app.inject({ url: '/cost', headers: { 'x-cost': '11' } })
    expect(tooLarge.statusCode).toBe(413)
    checkFields(tooLarge)
    app.rateLimiter.setScale(0.5, 'GET /cost')
    const reduced = await app.inject({ url: '/cost', headers: { 'x-cost': '8' } })
    expect(reduced.statusCode).toBe(503)
    const policies = checkFields(reduced)
    for (const name of reduced.json()['violated-policies'] as string[]) expect(policies.has(name)).toBe(true)
    expect([...seen].sort()).toEqual([200, 429])
  })

  it('on a caller\'s concurrency limit: q with qu="concurrent-requests", no w', async () => {
    const app = await appWith(memoryCase)
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => { release = resolve })
    app.get('/gen', { config: { rateLimit: { limits: ['10/minute'], concurrency: 1 } } }, async () => { await gate; return { ok: true } })
    const held = app.inject('/gen')
    await new Promise(resolve => setTimeout(resolve, 20))
    const refused = await app.inject('/gen')
    expect(refused.statusCode).toBe(429)
    expect(checkFields(refused).get('concurrency')?.get('qu')).toBe('concurrent-requests')
    release()
    checkFields(await held)
  })
})
