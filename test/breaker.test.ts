import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { Breaker } from '../lib/breaker.js'
import gcra from '../lib/index.js'
import { newApp, ok } from './helpers/app.js'
import { hasRedis } from './helpers/redis.js'
import { freePort, startRedis } from './setup/redis.js'

describe('circuit breaker', () => {
  it('opens after consecutive failures, probes once per back-off, and closes on success', () => {
    let now = 0
    const b = new Breaker({ threshold: 3, backoffMs: 100, maxBackoffMs: 400 }, () => now)
    b.failure(); b.failure()
    expect(b.state).toBe('closed')
    b.success()
    b.failure(); b.failure()
    expect(b.state).toBe('closed') // the success reset the count
    b.failure()
    expect(b.state).toBe('open')
    expect(b.allow()).toBe(false)
    now = 99
    expect(b.allow()).toBe(false)
    now = 100
    expect(b.allow()).toBe(true) // the probe
    expect(b.state).toBe('half-open')
    expect(b.allow()).toBe(false) // one probe at a time
    b.failure()
    expect(b.state).toBe('open')
    now = 299
    expect(b.allow()).toBe(false) // the back-off doubled to 200
    now = 300
    expect(b.allow()).toBe(true)
    b.failure()
    now = 699
    expect(b.allow()).toBe(false)
    now = 700
    expect(b.allow()).toBe(true)
    b.failure()
    now = 1100 // capped at 400
    expect(b.allow()).toBe(true)
    b.success()
    expect(b.state).toBe('closed')
    expect(b.allow()).toBe(true)
  })
})

describe.runIf(hasRedis)('the breaker in front of a dead Redis', () => {
  it('stops calling it after three failures, probes once per back-off, and recovers on its own', async () => {
    const port = await freePort()
    const client = new Redis({ port, lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 50 })
    client.on('error', () => {})
    const app = newApp()
    app.addHook('onClose', async () => { client.disconnect() })
    await app.register(gcra, { store: { redis: client }, storeTimeoutMs: 50, onStoreError: 'deny' })
    app.get('/p', { config: { rateLimit: { limits: ['100/second'] } } }, ok)
    await app.ready()
    // count what reaches the client's script command
    const named = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    const original = named.fastifyGcraDecideV1!.bind(client)
    let calls = 0
    named.fastifyGcraDecideV1 = (...args: unknown[]) => { calls++; return original(...args) }

    for (let i = 0; i < 10; i++) expect((await app.inject('/p')).statusCode).toBe(503)
    expect(calls).toBe(3)
    await new Promise(resolve => setTimeout(resolve, 120))
    expect((await app.inject('/p')).statusCode).toBe(503)
    expect(calls).toBe(4) // the probe
    expect(app.logs.filter(l => l.msg.includes('the store failed'))).toHaveLength(1)

    const server = await startRedis([], port)
    try {
      const deadline = Date.now() + 3000
      let status = 503
      while (status !== 200 && Date.now() < deadline) {
        await new Promise(resolve => setTimeout(resolve, 50))
        status = (await app.inject('/p')).statusCode
      }
      expect(status).toBe(200)
      expect(app.logs.filter(l => l.msg.includes('the store answers again'))).toHaveLength(1)
    } finally {
      await app.close()
      await server.stop()
    }
  }, 20_000)
})
