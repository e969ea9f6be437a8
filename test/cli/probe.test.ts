import { describe, expect, it } from 'vitest'
import { formatSummary, runProbe } from '../../lib/cli/probe.js'
import { storeCases } from '../helpers/app.js'
import { FLOWER, startDemo } from '../helpers/demo.js'

const base = { requests: 14, durationMs: 10_000, concurrency: 2, method: 'POST', body: JSON.stringify(FLOWER) }

describe.each(storeCases)('probe against the example API on the $name store', (store) => {
  it('counts admitted and refused, and reads the policies, remaining and Retry-After', async () => {
    const { url } = await startDemo(store, { inference: ['10/minute'], global: ['1000/hour'] })
    const s = await runProbe({ ...base, url: `${url}/predict`, headers: { 'content-type': 'application/json', 'x-api-key': 'demo-free-key' } })
    expect(s).toMatchObject({ stopped: 'requests', sent: 14, completed: 14, admitted: 10, refused: 4, errors: 0, statuses: { 200: 10, 429: 4 } })
    expect(s.policies.map(p => [p.name, p.quota, p.windowSeconds])).toEqual([['10/minute', 10, 60], ['global 1000/hour', 1000, 3600]])
    expect(s.remaining).toEqual({ first: 9, min: 0, last: 0 })
    expect(s.retryAfterSeconds).toMatchObject({ count: 4, min: 6, max: 6 })
    // a full bucket of 10 plus what 10/minute adds in well under a second
    expect(s.bound).toEqual({ policy: '10/minute', admitted: 10 })
    expect(s.timeline.reduce((n, t) => n + t.admitted, 0)).toBe(10)
    const text = formatSummary(s)
    expect(text).toMatch(/429 refused\s+4\n/)
    expect(text).toContain('"10/minute"')
    expect(text).toContain('Retry-After: 4 values, min 6 s, median 6 s, max 6 s')
  })

  it('stops at its duration, at its rate, and counts other statuses apart', async () => {
    const { url } = await startDemo(store)
    const s = await runProbe({ ...base, requests: 1000, durationMs: 1000, rate: 5, concurrency: 4, url: `${url}/predict`, headers: { 'content-type': 'application/json', 'x-api-key': 'wrong' } })
    expect(s.stopped).toBe('duration')
    expect(s.sent).toBeGreaterThanOrEqual(4)
    expect(s.sent).toBeLessThanOrEqual(5)
    expect(s.statuses).toEqual({ 401: s.completed })
    expect(s.admitted + s.refused).toBe(0)
  })

  it('stops on its signal and still summarises what it saw', async () => {
    const { url } = await startDemo(store)
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 600)
    const s = await runProbe({ ...base, requests: 1000, rate: 10, url: `${url}/health`, headers: {}, method: 'GET', body: undefined, signal: controller.signal })
    expect(s.stopped).toBe('interrupted')
    expect(s.completed).toBeGreaterThan(2)
    expect(s.completed).toBeLessThan(20)
    expect(s.statuses).toEqual({ 200: s.completed })
  })
})

describe('probe schedule and bound', () => {
  it('resumes its rate after a stall instead of bursting to catch up', async () => {
    const starts: number[] = []
    let calls = 0
    const slowFirst: typeof fetch = async () => {
      starts.push(Date.now())
      if (calls++ === 0) await new Promise(resolve => setTimeout(resolve, 1000))
      return new Response('ok')
    }
    const s = await runProbe({ url: 'http://x/', requests: 8, durationMs: 10_000, rate: 10, concurrency: 1, method: 'GET', headers: {}, fetch: slowFirst })
    expect(s.sent).toBe(8)
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!)
    // after the 1 s stall, requests go on 100 ms apart, not all at once
    expect(gaps.slice(1).every(g => g >= 80)).toBe(true)
  })

  it('bases the GCRA bound on the fullest bucket seen, not on the first answer to arrive', async () => {
    let n = 0
    const fields = (r: number) => ({ 'ratelimit-policy': '"p";q=10;w=60', ratelimit: `"p";r=${r};t=6` })
    // the first request charged (r=9) answers last
    const fake: typeof fetch = async () => {
      const i = n++
      if (i === 0) { await new Promise(resolve => setTimeout(resolve, 200)); return new Response('ok', { headers: fields(9) }) }
      return new Response('ok', { headers: fields(9 - i) })
    }
    const s = await runProbe({ url: 'http://x/', requests: 10, durationMs: 10_000, concurrency: 2, method: 'GET', headers: {}, fetch: fake })
    expect(s.admitted).toBe(10)
    expect(s.bound?.admitted).toBeGreaterThanOrEqual(10)
  })

  it('counts requests cut off by an interrupt apart, and keeps them in sent', async () => {
    const controller = new AbortController()
    const never: typeof fetch = (_u, init) => new Promise((_resolve, reject) => {
      init?.signal?.addEventListener('abort', () => reject(new Error('aborted')))
    })
    setTimeout(() => controller.abort(), 100)
    const s = await runProbe({ url: 'http://x/', requests: 10, durationMs: 10_000, concurrency: 2, method: 'GET', headers: {}, fetch: never, signal: controller.signal })
    expect(s).toMatchObject({ stopped: 'interrupted', sent: 2, aborted: 2, completed: 0, errors: 0 })
  })
})
