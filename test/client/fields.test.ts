import { describe, expect, it } from 'vitest'
import { parseRetryAfter, readRateLimit } from '../../lib/client/fields.js'
import { appWith, ok, storeCases } from '../helpers/app.js'

describe('Retry-After', () => {
  const now = Date.parse('2026-11-22T12:00:00Z')
  it.each([
    ['6', 6000], ['0', 0], [' 120 ', 120_000],
    ['Sun, 22 Nov 2026 12:00:30 GMT', 30_000], ['Sun, 22 Nov 2026 11:00:00 GMT', 0],
  ])('reads %j', (value, ms) => {
    expect(parseRetryAfter(value, now)).toBe(ms)
  })
  it.each([
    ['Sunday, 22-Nov-26 12:01:00 GMT', 60_000],
    ['Sun Nov 22 12:00:10 2026', 10_000],
    ['Sun Nov  2 12:00:10 2026', 0],
  ])('reads the obsolete date form %j', (value, ms) => {
    expect(parseRetryAfter(value, now)).toBe(ms)
  })
  it.each(['', '-1', '1.5', 'soon', '6s', 'Sun, 99 Nov 2026 12:00:30 GMT', '2026-11-22T12:00:30Z', 'Sun, 1 GMT', 'Abc, 31 Feb 1994 08:49:37 GMT', 'Sun, 31 Feb 2026 08:49:37 GMT', 'Sun, 22 Nov 2026 25:00:00 GMT'])('ignores %j', (value) => {
    expect(parseRetryAfter(value, now)).toBeUndefined()
  })
})

describe.each(storeCases)('rate-limit fields of real responses on the $name store', (store) => {
  it('read draft fields, merged by policy, with the most restrictive on top', async () => {
    const app = await appWith(store, { global: ['5/hour'] })
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    const view = readRateLimit((await app.inject('/p')).headers)
    expect(view).toEqual({
      policies: [
        { name: '2/minute', quota: 2, windowSeconds: 60, remaining: 1, resetSeconds: 30 },
        { name: 'global 5/hour', quota: 5, windowSeconds: 3600, remaining: 4, resetSeconds: 720 },
      ],
      remaining: 1,
      resetSeconds: 30,
      retryAfterMs: undefined,
    })
    await app.inject('/p')
    const refused = readRateLimit((await app.inject('/p')).headers)
    expect(refused.remaining).toBe(0)
    expect(refused.retryAfterMs).toBe(30_000)
  })

  it('read legacy fields', async () => {
    const app = await appWith(store, { headers: 'legacy' })
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    expect(readRateLimit((await app.inject('/p')).headers)).toEqual({
      policies: [{ name: '', quota: 2, remaining: 1, resetSeconds: 30 }], remaining: 1, resetSeconds: 30, retryAfterMs: undefined,
    })
  })
})

describe('malformed fields', () => {
  it('are ignored, item by item or field by field, never thrown', () => {
    const view = readRateLimit(new Headers({
      'ratelimit-policy': '"ok";q=10;w=60, "no-quota";w=60, "neg";q=-1',
      ratelimit: '"ok";r=abc',
      'retry-after': 'later',
    }))
    expect(view.policies).toEqual([{ name: 'ok', quota: 10, windowSeconds: 60 }])
    expect(view.remaining).toBeUndefined()
    expect(view.retryAfterMs).toBeUndefined()
    expect(readRateLimit(new Headers({ ratelimit: '"a";r=1, (', 'x-ratelimit-remaining': '3' })).remaining).toBe(3)
    expect(readRateLimit(new Headers({ 'x-ratelimit-remaining': '-3', 'x-ratelimit-limit': '1e3' })).policies).toEqual([])
    expect(readRateLimit({}).policies).toEqual([])
  })

  it('find fields in a plain object whatever the case of their names', () => {
    expect(readRateLimit({ 'RateLimit-Policy': '"a";q=5;w=10', RateLimit: '"a";r=2;t=2', 'Retry-After': '3' })).toEqual({
      policies: [{ name: 'a', quota: 5, windowSeconds: 10, remaining: 2, resetSeconds: 2 }], remaining: 2, resetSeconds: 2, retryAfterMs: 3000,
    })
  })

  it('take an epoch X-RateLimit-Reset as a time, not a delay', () => {
    const now = Date.parse('2026-11-22T12:00:00Z')
    const view = readRateLimit({ 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(now / 1000 + 42) }, now)
    expect(view.resetSeconds).toBe(42)
  })
})
