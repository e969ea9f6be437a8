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

describe.each(storeCases)('pacing under pressure on the $name store', (store) => {
  it('meets no 429 with concurrent calls, from the very first ones', async () => {
    const { url } = await startDemo(store, { inference: ['5/second'], global: ['1000/hour'] })
    const client = createClient({ baseUrl: url, pace: true, maxRetries: 0 })
    const codes = await Promise.all(Array.from({ length: 8 }, () => client.fetch('/predict', predict()).then(r => r.status)))
    const more: number[] = []
    await Promise.all(Array.from({ length: 4 }, async () => {
      for (let i = 0; i < 4; i++) more.push((await client.fetch('/predict', predict())).status)
    }))
    expect([...codes, ...more].filter(c => c !== 200)).toEqual([])
  }, 20_000)

  it('keeps each route\'s policies to that route: a dry route does not slow another', async () => {
    const { url } = await startDemo(store, { explain: ['1/minute'], global: ['1000/hour'] })
    const client = createClient({ baseUrl: url, pace: true, maxRetries: 0, maxWaitMs: 100_000 })
    const explain = { ...predict(), body: JSON.stringify({ input: [6.1, 2.8, 4.7, 1.2] }) }
    expect((await client.fetch('/predict/explain', explain)).status).toBe(200)
    const started = Date.now()
    expect((await client.fetch('/model', { headers: { 'x-api-key': 'demo-free-key' } })).status).toBe(200)
    expect((await client.fetch('/model', { headers: { 'x-api-key': 'demo-free-key' } })).status).toBe(200)
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it('sends at once, not after a useless wait, when pacing would pass maxWaitMs; and stops on abort while queued', async () => {
    const { url } = await startDemo(store, { inference: ['1/minute'], global: ['1000/hour'] })
    const client = createClient({ baseUrl: url, pace: true, maxRetries: 0, maxWaitMs: 3000 })
    expect((await client.fetch('/predict', predict())).status).toBe(200)
    const t0 = Date.now()
    expect((await client.fetch('/predict', predict())).status).toBe(429)
    expect(Date.now() - t0).toBeLessThan(1000)

    const patient = createClient({ baseUrl: url, pace: true, maxRetries: 0, maxWaitMs: 120_000 })
    await patient.fetch('/predict', predict(null))
    const first = patient.fetch('/predict', predict(null)).catch((e: Error) => e.message)
    const controller = new AbortController()
    const queued = patient.fetch('/predict', { ...predict(null), signal: controller.signal }).catch((e: Error) => e.message)
    setTimeout(() => controller.abort(new Error('gave up while queued')), 100)
    const t1 = Date.now()
    expect(await queued).toBe('gave up while queued')
    expect(Date.now() - t1).toBeLessThan(2000)
    void first
  })
})

describe('pacing against a fixed-window server (t, not w/q, is when quota returns)', () => {
  it('meets no 429', async () => {
    const { createServer } = await import('node:http')
    // 3 per 1-second window; t = whole seconds to the window's end
    let windowStart = Date.now()
    let used = 0
    const server = createServer((_req, res) => {
      const now = Date.now()
      if (now - windowStart >= 1000) { windowStart = now - ((now - windowStart) % 1000); used = 0 }
      const t = Math.ceil((windowStart + 1000 - now) / 1000)
      const fields = { 'ratelimit-policy': '"w";q=3;w=1', ratelimit: `"w";r=${Math.max(0, 3 - used - 1)};t=${t}` }
      if (used >= 3) { res.writeHead(429, { ...fields, ratelimit: `"w";r=0;t=${t}`, 'retry-after': String(t) }); res.end(); return }
      used++
      res.writeHead(200, fields)
      res.end('ok')
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = server.address() as { port: number }
      const client = createClient({ baseUrl: `http://127.0.0.1:${port}`, pace: true, maxRetries: 0 })
      const codes: number[] = []
      for (let i = 0; i < 7; i++) codes.push((await client.fetch('/')).status)
      expect(codes).toEqual(Array(7).fill(200))
    } finally {
      server.close()
    }
  }, 20_000)
})

describe('bodies that cannot be sent twice', () => {
  it('are sent once: the 429 comes back instead of a retry with an emptied body', async () => {
    const { createServer } = await import('node:http')
    const bodies: string[] = []
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => { body += d })
      req.on('end', () => { bodies.push(body); res.writeHead(429, { 'retry-after': '0' }); res.end() })
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = server.address() as { port: number }
      const client = createClient({ baseUrl: `http://127.0.0.1:${port}` })
      const stream = new ReadableStream({ start (c) { c.enqueue(new TextEncoder().encode('payload')); c.close() } })
      const r = await client.fetch('/', { method: 'POST', body: stream, duplex: 'half' } as RequestInit)
      expect(r.status).toBe(429)
      expect(bodies).toEqual(['payload'])
      const again = await client.fetch('/', { method: 'POST', body: 'text' })
      expect(again.status).toBe(429)
      expect(bodies.slice(1)).toEqual(['text', 'text', 'text', 'text'])
    } finally {
      server.close()
    }
  })
})
