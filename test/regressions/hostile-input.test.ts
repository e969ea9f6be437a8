// Hostile and broken input, as properties: start-up rejects what is invalid with a coded
// error; at run time nothing throws unhandled, nothing is charged twice, and no response
// is a 500 with a stack trace.
import Fastify from 'fastify'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import gcra, { FST_GCRA_INVALID_OPTION } from '../../lib/index.js'
import { appWith, memoryCase, storeCases } from '../helpers/app.js'

async function registerError (options: unknown, rateLimit?: unknown): Promise<unknown> {
  const app = Fastify()
  try {
    await app.register(gcra, options as never)
    if (rateLimit !== undefined) app.get('/r', { config: { rateLimit: rateLimit as never } }, async () => 'ok')
    await app.ready()
    return undefined
  } catch (error) {
    return error
  } finally {
    await app.close()
  }
}

const weird = fc.oneof(
  fc.anything(),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, -1, 0, 0.5, 1e308, '', '10/minute', '0/minute', '{}', [], {}, null, undefined, () => 1),
)

describe('start-up', () => {
  it('rejects any invalid option value with FST_GCRA_INVALID_OPTION, and nothing else', async () => {
    const keys = ['store', 'key', 'tier', 'tiers', 'limits', 'global', 'headers', 'prefix', 'hook', 'storeTimeoutMs', 'onStoreError', 'errorResponseBuilder', 'bogus']
    await fc.assert(fc.asyncProperty(fc.constantFrom(...keys), weird, async (key, value) => {
      const error = await registerError({ [key]: value })
      if (error !== undefined) {
        expect(error).toBeInstanceOf(FST_GCRA_INVALID_OPTION)
        expect((error as Error).message).toMatch(/^fastify-gcra: options/)
      }
    }), { numRuns: 300, seed: 5 })
  }, 60_000)

  it('reads any limit string as a valid limit or rejects it, naming the path', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(fc.string({ maxLength: 30 }), fc.stringMatching(/^\d{1,4}\s?\/\s?\d{0,3}\s?(second|minute|hour|day|sec|min)s?$/)), async (text) => {
      const error = await registerError({ limits: [text] })
      if (error !== undefined) expect((error as Error).message).toContain('options.limits[0]')
    }), { numRuns: 300, seed: 6 })
  }, 60_000)

  it('accepts or rejects any route config the same way', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(weird, fc.record({ limits: weird, cost: weird, scope: weird, tiers: weird }, { requiredKeys: [] })), async (config) => {
      const error = await registerError({ limits: ['10/minute'], tiers: { premium: 2 } }, config)
      if (error !== undefined) {
        expect(error).toBeInstanceOf(FST_GCRA_INVALID_OPTION)
        expect((error as Error).message).toMatch(/^fastify-gcra: route GET \/r: config\.rateLimit/)
      }
    }), { numRuns: 300, seed: 7 })
  }, 60_000)
})

const identity = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom('', '{}', '{', '}', '{a}{b}', 'x'.repeat(16 * 1024), '\u0000', '127.0.0.1', 'ключ', '🔑'),
)

describe.each(storeCases)('run time on the $name store', (store) => {
  it('limits any identity exactly, on its own bucket', async () => {
    await fc.assert(fc.asyncProperty(fc.array(identity, { minLength: 1, maxLength: 12 }), async (ids) => {
      const app = await appWith(store, { key: (req) => (req as unknown as { idx: string }).idx })
      app.addHook('onRequest', async (req) => { (req as unknown as { idx: string }).idx = ids[Number(req.headers['x-i'])]! })
      app.get('/p', { config: { rateLimit: { limits: ['2/hour'] } } }, async () => 'ok')
      const seen = new Map<string, number>()
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < ids.length; i++) {
          const r = await app.inject({ url: '/p', headers: { 'x-i': String(i) } })
          const n = (seen.get(ids[i]!) ?? 0) + 1
          seen.set(ids[i]!, n)
          expect(r.statusCode).toBe(n <= 2 ? 200 : 429)
        }
      }
      await app.close()
    }), { numRuns: store.name === 'redis' ? 15 : 40, seed: 8 })
  }, 60_000)

  it('charges a cost function\'s valid values exactly once, and answers invalid ones with a bare 500', async () => {
    const cost = fc.oneof(
      fc.integer({ min: 1, max: 6 }),
      // fractions the time-free model holds exactly (a run refills < 0.003 units, never a decision's worth)
      fc.constantFrom(0.25, 0.5, 2.25, 1e6, Number.NaN, Infinity, -Infinity, -1, 0, -0, '3', null, undefined, {}, [2]),
    )
    await fc.assert(fc.asyncProperty(fc.array(cost, { minLength: 1, maxLength: 10 }), async (costs) => {
      let i = 0
      const limit = { max: 10, per: '1 hour', burst: 10 }
      const app = await appWith(store)
      app.post('/c', { config: { rateLimit: { limits: [limit], scope: 'c', cost: () => costs[i++] as number } } }, async () => 'ok')
      let charged = 0
      for (const c of costs) {
        if (10 - charged < 1) {
          // less than one unit left: turned away in onRequest, before the cost is computed
          expect((await app.inject({ method: 'POST', url: '/c' })).statusCode).toBe(429)
          break
        }
        const r = await app.inject({ method: 'POST', url: '/c' })
        // 0 (and -0) is a free request: admitted, charged nothing
        const valid = typeof c === 'number' && Number.isFinite(c) && c >= 0
        expect(r.body).not.toMatch(/\n\s+at /)
        if (!valid) { expect(r.statusCode).toBe(500); continue }
        if (c > 10) { expect(r.statusCode).toBe(413); continue }
        const fits = charged + c <= 10 + 1e-9
        expect(r.statusCode).toBe(fits ? 200 : 429)
        if (fits) charged += c
      }
      // the bucket holds exactly what the admitted costs left: nothing charged twice, nothing for refusals
      const left = await app.rateLimiter.peek('127.0.0.1', [limit], { scope: 'c' })
      expect(left.remaining).toBe(Math.floor(10 - charged + 1e-9))
      await app.close()
    }), { numRuns: store.name === 'redis' ? 15 : 40, seed: 9 })
  }, 60_000)

  it('answers any tier value: a name is a tier (or the base one), anything else a 500', async () => {
    await fc.assert(fc.asyncProperty(weird, async (tier) => {
      const app = await appWith(store, { tiers: { premium: 2 }, tier: () => tier as string })
      app.get('/t', { config: { rateLimit: { limits: ['5/minute'] } } }, async () => 'ok')
      const r = await app.inject('/t')
      const name = tier === null || tier === undefined || typeof tier === 'string'
      expect(r.statusCode).toBe(name ? 200 : 500)
      expect(r.body).not.toMatch(/\n\s+at /)
      await app.close()
    }), { numRuns: store.name === 'redis' ? 20 : 60, seed: 10 })
  }, 60_000)
})

describe('spoofed client addresses', () => {
  it('with trustProxy off, X-Forwarded-For changes nothing', async () => {
    const app = await appWith(memoryCase)
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, async () => 'ok')
    const spoof = (xff: string) => app.inject({ url: '/p', remoteAddress: '203.0.113.7', headers: { 'x-forwarded-for': xff } })
    expect((await spoof('1.1.1.1')).statusCode).toBe(200)
    expect((await spoof('2.2.2.2')).statusCode).toBe(429)
    expect((await spoof('3.3.3.3, 4.4.4.4')).statusCode).toBe(429)
  })

  it('with a trusted proxy, only the hop that proxy saw counts', async () => {
    const app = Fastify({ trustProxy: '127.0.0.1' })
    try {
      await app.register(gcra)
      app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, async () => 'ok')
      const via = (remoteAddress: string, xff: string) => app.inject({ url: '/p', remoteAddress, headers: { 'x-forwarded-for': xff } })
      expect((await via('127.0.0.1', '198.51.100.1')).statusCode).toBe(200)
      // entries the client wrote before the proxy's own are not believed
      expect((await via('127.0.0.1', '9.9.9.9, 198.51.100.1')).statusCode).toBe(429)
      expect((await via('127.0.0.1', '198.51.100.2')).statusCode).toBe(200)
      // a request that did not come through the proxy is its own address, whatever it claims
      expect((await via('203.0.113.9', '198.51.100.3')).statusCode).toBe(200)
      expect((await via('203.0.113.9', '198.51.100.4')).statusCode).toBe(429)
    } finally {
      await app.close()
    }
  })
})
