/**
 * The legacy `X-RateLimit-*` fields, read by a parser we did not write:
 * `ratelimit-header-parser` (express-rate-limit's), which reads the draft-7 shapes
 * (`RateLimit-Limit`, `X-RateLimit-*`, draft-7's combined `RateLimit: limit=…`) only.
 */
import { parseRateLimit } from 'ratelimit-header-parser'
import { describe, expect, it } from 'vitest'
import { appWith, memoryCase, ok } from '../helpers/app.js'

const legacyOnly = (headers: Record<string, unknown>): Record<string, string> =>
  Object.fromEntries(Object.entries(headers).filter(([h]) => h.startsWith('x-ratelimit-')).map(([h, v]) => [h, String(v)]))

describe('ratelimit-header-parser reads our legacy fields', () => {
  const route = { config: { rateLimit: { limits: [{ max: 10, per: '1 minute', burst: 20 }, { max: 3, per: '500ms', name: 'fast' }] } } }

  it.each(['legacy', 'both'] as const)('headers: %s — limit, remaining (and so used) and reset of the most restrictive policy', async (headers) => {
    const app = await appWith(memoryCase, { headers })
    app.get('/a', route, ok)
    for (let i = 1; i <= 4; i++) {
      const res = await app.inject('/a')
      const sent = legacyOnly(res.headers)
      // with 'both' the draft-10 `RateLimit` would be read first, as draft-7's combined form: see below
      const parsed = parseRateLimit(headers === 'legacy' ? res.headers as Record<string, string> : sent)
      if (headers === 'both') expect(parseRateLimit(res.headers as Record<string, string>)!.limit).toBeNaN()
      expect(parsed).toBeDefined()
      expect(parsed!.limit).toBe(Number(sent['x-ratelimit-limit']))
      expect(parsed!.remaining).toBe(Number(sent['x-ratelimit-remaining']))
      expect(parsed!.used).toBeGreaterThanOrEqual(0)
      const resetS = Number(sent['x-ratelimit-reset'])
      expect(Math.abs(parsed!.reset!.getTime() - (Date.now() + resetS * 1000))).toBeLessThan(1500)
      if (i <= 3) {
        // "fast" (3 per 500 ms) has the least left: q=6 over 1 s, 3 - i left
        expect(sent).toEqual({ 'x-ratelimit-limit': '6', 'x-ratelimit-remaining': String(3 - i), 'x-ratelimit-reset': '1' })
        expect(parsed!.used).toBe(3 + i)
      } else {
        expect(res.statusCode).toBe(429)
      }
    }
  })

  it('a burst above max: the limit is the burst, so used = limit − remaining is never negative', async () => {
    const app = await appWith(memoryCase, { headers: 'legacy' })
    app.get('/b', { config: { rateLimit: { limits: [{ max: 10, per: '1 minute', burst: 20 }] } } }, ok)
    const parsed = parseRateLimit((await app.inject('/b')).headers as Record<string, string>)
    expect(parsed).toMatchObject({ limit: 20, remaining: 19, used: 1 })
  })

  it('does not read draft-10: our RateLimit / RateLimit-Policy come out as NaN', async () => {
    const app = await appWith(memoryCase, { headers: 'draft' })
    app.get('/a', route, ok)
    const res = await app.inject('/a')
    expect(res.headers.ratelimit).toBe('"10/minute burst 20";r=19;t=6, "fast";r=2;t=1')
    const parsed = parseRateLimit(res.headers as Record<string, string>)
    expect(Number.isNaN(parsed!.limit) && Number.isNaN(parsed!.remaining)).toBe(true)
    expect(Number.isNaN(parsed!.reset!.getTime())).toBe(true)
  })
})
