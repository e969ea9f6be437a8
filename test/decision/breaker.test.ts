import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { Breaker } from '../../lib/decision/breaker.js'
import gcra from '../../lib/index.js'
import { newApp, ok } from '../helpers/app.js'
import { hasRedis } from '../helpers/redis.js'
import { freePort, startRedis } from '../setup/redis.js'

describe('circuit breaker', () => {
  it('opens after consecutive failures, probes once per back-off, and closes on success', () => {
    let now = 0
    const b = new Breaker({ threshold: 3, backoffMs: 100, maxBackoffMs: 400 }, () => now)
    expect([b.failure(), b.failure()]).toEqual([false, false])
    expect(b.state).toBe('closed')
    expect(b.success()).toBe(false) // it was closed: nothing recovered
    b.failure(); b.failure()
    expect(b.state).toBe('closed') // the success reset the count
    expect(b.failure()).toBe(true) // this one opens it
    expect(b.state).toBe('open')
    expect(b.allow()).toBe(false)
    now = 99
    expect(b.allow()).toBe(false)
    now = 100
    expect(b.allow()).toBe('probe')
    expect(b.state).toBe('half-open')
    expect(b.allow()).toBe(false) // one probe at a time
    // a call sent before the breaker opened fails late: it does not settle the probe
    expect(b.failure(false)).toBe(false)
    expect(b.state).toBe('half-open')
    b.failure(true)
    expect(b.state).toBe('open')
    now = 299
    expect(b.allow()).toBe(false) // the back-off doubled to 200
    now = 300
    expect(b.allow()).toBe('probe')
    b.failure(true)
    now = 699
    expect(b.allow()).toBe(false)
    now = 700
    expect(b.allow()).toBe('probe')
    b.failure(true)
    now = 1100 // capped at 400
    expect(b.allow()).toBe('probe')
    expect(b.success()).toBe(true) // recovered
    expect(b.state).toBe('closed')
    expect(b.allow()).toBe('call')
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
    const original = named.fastifyGcraDecideV3!.bind(client)
    let calls = 0
    named.fastifyGcraDecideV3 = (...args: unknown[]) => { calls++; return original(...args) }

    for (let i = 0; i < 10; i++) expect((await app.inject('/p')).statusCode).toBe(503)
    expect(calls).toBe(3)
    expect(app.rateLimiter.stats().openBreakers).toBe(1)
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
