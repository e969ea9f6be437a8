// The client against the example ML API, over real HTTP, on both stores.
import { describe, expect, it } from 'vitest'
import { createClient } from '../../lib/client/index.js'
import { storeCases } from '../helpers/app.js'
import { FLOWER, startDemo } from '../helpers/demo.js'

/** fetch, counting the calls that reach the network. */
function countingFetch () {
  const calls: number[] = []
  const f: typeof fetch = async (input, init) => { calls.push(Date.now()); return await fetch(input, init) }
  return { calls, fetch: f }
}

const predict = (key: string | null = 'demo-free-key') => ({
  method: 'POST',
  body: JSON.stringify(FLOWER),
  headers: { 'content-type': 'application/json', ...(key === null ? {} : { 'x-api-key': key }) },
})
const fast = { inference: ['2/second'], global: ['1000/hour'] }

describe.each(storeCases)('client against the example API on the $name store', (store) => {
  it('recovers from a 429 by waiting Retry-After, then retrying', async () => {
    const { url } = await startDemo(store, fast)
    const counted = countingFetch()
    const client = createClient({ baseUrl: url, fetch: counted.fetch, jitter: 0.1 })
    expect((await client.fetch('/predict', predict())).status).toBe(200)
    expect((await client.fetch('/predict', predict())).status).toBe(200)
    expect(client.rateLimit?.remaining).toBe(0)
    const started = Date.now()
    const third = await client.fetch('/predict', predict())
    expect(third.status).toBe(200)
    expect((await third.json()).label).toBe('setosa')
    // one refused call, then the retry after Retry-After: 1 (plus at most 10 % jitter)
    expect(counted.calls).toHaveLength(4)
    const waited = counted.calls[3]! - counted.calls[2]!
    expect(waited).toBeGreaterThanOrEqual(1000)
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it('never retries a 413, a 401 or another 4xx', async () => {
    const { url } = await startDemo(store, fast)
    const counted = countingFetch()
    const client = createClient({ baseUrl: url, fetch: counted.fetch })
    const batch = { inputs: Array.from({ length: 3 }, () => FLOWER.input) }
    const tooLarge = await client.fetch('/predict/batch', { ...predict(), body: JSON.stringify(batch) })
    expect(tooLarge.status).toBe(413)
    expect((await client.fetch('/predict', predict('not-a-key'))).status).toBe(401)
    expect((await client.fetch('/predict', { ...predict(), body: '{"input":[1]}' })).status).toBe(400)
    expect(counted.calls).toHaveLength(3)
  })

  it('gives the 429 back when the wait would pass maxWaitMs, and stops a wait on abort', async () => {
    const { url } = await startDemo(store, { inference: ['1/minute'], global: ['1000/hour'] })
    const counted = countingFetch()
    const client = createClient({ baseUrl: url, fetch: counted.fetch, maxWaitMs: 5000 })
    expect((await client.fetch('/predict', predict())).status).toBe(200)
    const started = Date.now()
    const refused = await client.fetch('/predict', predict())
    expect(refused.status).toBe(429)
    expect(Date.now() - started).toBeLessThan(1000)
    expect(client.rateLimit?.retryAfterMs).toBe(60_000)

    const patient = createClient({ baseUrl: url, maxWaitMs: 120_000 })
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('caller gave up')), 200)
    const t0 = Date.now()
    await expect(patient.fetch('/predict', { ...predict(), signal: controller.signal })).rejects.toThrow('caller gave up')
    expect(Date.now() - t0).toBeLessThan(2000)
  })

  it('with pace: true, spreads calls so the policy is never exceeded', async () => {
    const { url } = await startDemo(store, { inference: ['5/second'], global: ['1000/hour'] })
    const counted = countingFetch()
    const client = createClient({ baseUrl: url, fetch: counted.fetch, pace: true, maxRetries: 0 })
    const codes: number[] = []
    const started = Date.now()
    for (let i = 0; i < 12; i++) codes.push((await client.fetch('/predict', predict())).status)
    expect(codes).toEqual(Array(12).fill(200))
    // 5 at once, then one per 200 ms
    expect(Date.now() - started).toBeGreaterThanOrEqual(7 * 200 - 50)
    // the same calls without pacing (another caller: no key, limited by IP) meet 429s
    const eager = createClient({ baseUrl: url, maxRetries: 0 })
    const eagerCodes: number[] = []
    for (let i = 0; i < 8; i++) eagerCodes.push((await eager.fetch('/predict', predict(null))).status)
    expect(eagerCodes.filter(c => c === 429).length).toBeGreaterThan(0)
  })

  it('paces batches by their cost', async () => {
    const { url } = await startDemo(store, { inference: ['10/second'], global: ['1000/hour'] })
    const client = createClient({ baseUrl: url, pace: true, maxRetries: 0 })
    const batch = JSON.stringify({ inputs: Array.from({ length: 4 }, () => FLOWER.input) })
    const codes: number[] = []
    for (let i = 0; i < 6; i++) codes.push((await client.fetch('/predict/batch', { ...predict(), body: batch, cost: 4 })).status)
    expect(codes).toEqual(Array(6).fill(200))
  })

  it('shows each caller its tier\'s quota, and nothing on the exempt health check', async () => {
    const { url } = await startDemo(store)
    const free = createClient({ baseUrl: url })
    await free.fetch('/predict', predict('demo-free-key'))
    expect(free.rateLimit?.policies[0]).toMatchObject({ name: '20/minute', quota: 20, remaining: 19 })
    const premium = createClient({ baseUrl: url })
    await premium.fetch('/predict', predict('demo-premium-key'))
    expect(premium.rateLimit?.policies[0]).toMatchObject({ name: '20/minute', quota: 100, remaining: 99 })
    await free.fetch('/health')
    expect(free.rateLimit).toEqual({ policies: [], remaining: undefined, resetSeconds: undefined, retryAfterMs: undefined })
  })
})
