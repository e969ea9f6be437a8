/**
 * The Redis client's life at start: a Redis out of reach is said once, at error level, with
 * its address and never a password, and the default onStoreError ('local') keeps limiting.
 */
import { createServer, type Socket } from 'node:net'
import { Cluster, Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import gcra from '../../lib/index.js'
import { storeAddress } from '../../lib/stores/redis-client.js'
import { newApp, ok, type LogLine } from '../helpers/app.js'
import { hasRedis, randomPrefix, redisClient } from '../helpers/redis.js'
import { freePort, startRedis } from '../setup/redis.js'

const errors = (logs: LogLine[]) => logs.filter(l => l.level >= 50)
const startLines = (logs: LogLine[]) => logs.filter(l => l.msg.includes('cannot reach Redis'))

describe('the address a log line gives', () => {
  it('is host:port or a socket path, never a password', () => {
    const lazy = { lazyConnect: true }
    expect(storeAddress(new Redis('redis://user:s3cret@10.1.2.3:6380/2', lazy))).toBe('10.1.2.3:6380')
    expect(storeAddress(new Redis(lazy))).toBe('localhost:6379')
    expect(storeAddress(new Redis({ ...lazy, path: '/run/redis.sock', password: 's3cret' }))).toBe('/run/redis.sock')
    const cluster = new Cluster(['redis://:s3cret@10.0.0.1:7000', { host: '10.0.0.2', port: 7001 }, 7002, '10.0.0.4:7003'], { lazyConnect: true })
    expect(storeAddress(cluster)).toBe('10.0.0.1:7000,10.0.0.2:7001,localhost:7002,10.0.0.4:7003')
  })
})

describe('a Redis out of reach at start', () => {
  it('is logged once, at error level, with its address; then the default limits locally', async () => {
    const port = await freePort()
    const app = newApp()
    await app.register(gcra, { store: { redis: `redis://user:s3cret@127.0.0.1:${port}` }, storeTimeoutMs: 50 })
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, async (req) => ({ degraded: req.rateLimit?.degraded }))
    await app.ready()
    expect(errors(app.logs)).toHaveLength(1)
    const [line] = startLines(app.logs)
    expect(line!.level).toBe(50)
    expect(line!.msg).toBe(`fastify-gcra: cannot reach Redis at 127.0.0.1:${port} (connect ECONNREFUSED 127.0.0.1:${port}); until it answers, requests follow onStoreError (by default 'local': each instance limits them on its own, in memory)`)
    expect(line!.store).toBe(`127.0.0.1:${port}`)
    // under the default, each request is decided in this process: never unlimited
    const replies = []
    for (let i = 0; i < 4; i++) replies.push(await app.inject('/p'))
    expect(replies.map(r => r.statusCode)).toEqual([200, 200, 429, 429])
    expect(replies[0]!.json()).toEqual({ degraded: true })
    expect(replies[2]!.headers['retry-after']).toBe('30')
    expect(replies[2]!.headers['ratelimit-policy']).toBe('"2/minute";q=2;w=60')
    // said once: the failed requests do not repeat the start-up line, and no line holds the password
    expect(startLines(app.logs)).toHaveLength(1)
    expect(JSON.stringify(app.logs)).not.toContain('s3cret')
  })

  it('is logged once when it accepts and never answers, after the start-up wait', async () => {
    const sockets: Socket[] = []
    const silent = createServer(socket => { sockets.push(socket) })
    await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
    const port = (silent.address() as { port: number }).port
    const app = newApp()
    app.addHook('onClose', async () => {
      for (const s of sockets) s.destroy()
      silent.close()
    })
    await app.register(gcra, { store: { redis: `redis://127.0.0.1:${port}` }, storeTimeoutMs: 50 })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.ready()
    expect(startLines(app.logs).map(l => [l.level, l.msg])).toEqual([
      [50, `fastify-gcra: cannot reach Redis at 127.0.0.1:${port} (no answer within 1000 ms); until it answers, requests follow onStoreError (by default 'local': each instance limits them on its own, in memory)`],
    ])
    expect((await app.inject('/p')).statusCode).toBe(200)
    expect((await app.inject('/p')).statusCode).toBe(429)
    expect(startLines(app.logs)).toHaveLength(1)
  })

  it('is logged once for a client given to the plugin that is not ready and errors', async () => {
    const port = await freePort()
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 50 })
    // the app's own listener (ioredis prints each error nobody listens to)
    client.on('error', () => {})
    const app = newApp()
    app.addHook('onClose', async () => { client.disconnect() })
    await app.register(gcra, { store: { redis: client }, storeTimeoutMs: 50 })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    void client.connect().catch(() => {})
    await app.ready()
    for (let i = 0; i < 20 && startLines(app.logs).length === 0; i++) await new Promise(resolve => setTimeout(resolve, 25))
    expect(startLines(app.logs).map(l => [l.level, l.store])).toEqual([[50, `127.0.0.1:${port}`]])
    expect(await Promise.all([app.inject('/p'), app.inject('/p')]).then(rs => rs.map(r => r.statusCode))).toEqual([200, 429])
    // more errors while it retries: still one line
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(startLines(app.logs)).toHaveLength(1)
  })

  it('leaves no listener on a client given to the plugin that never became ready', async () => {
    const port = await freePort()
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false })
    const before = { ready: client.listenerCount('ready'), error: client.listenerCount('error') }
    const app = newApp()
    await app.register(gcra, { store: { redis: client } })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.ready()
    // waiting for it: the start-up check, the line for when it answers
    expect(client.listenerCount('ready')).toBeGreaterThan(before.ready)
    await app.close()
    expect({ ready: client.listenerCount('ready'), error: client.listenerCount('error') }).toEqual(before)
    client.disconnect()
  })

  it.runIf(hasRedis)('leaves no listener on a ready client given to the plugin', async () => {
    const client = redisClient()
    await new Promise(resolve => client.once('ready', resolve))
    const before = { ready: client.listenerCount('ready'), error: client.listenerCount('error') }
    const app = newApp()
    await app.register(gcra, { store: { redis: client }, prefix: randomPrefix() })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    expect((await app.inject('/p')).statusCode).toBe(200)
    await app.close()
    expect({ ready: client.listenerCount('ready'), error: client.listenerCount('error') }).toEqual(before)
  })

  it.runIf(hasRedis)('says so when it answers after all', async () => {
    const port = await freePort()
    const app = newApp()
    await app.register(gcra, { store: { redis: `redis://127.0.0.1:${port}` } })
    await app.ready()
    expect(startLines(app.logs)).toHaveLength(1)
    const server = await startRedis([], port)
    try {
      const back = (): LogLine | undefined => app.logs.find(l => l.msg === `fastify-gcra: Redis at 127.0.0.1:${port} answers now`)
      for (let i = 0; i < 60 && back() === undefined; i++) await new Promise(resolve => setTimeout(resolve, 50))
      expect(back()?.level).toBe(30)
      await app.close()
    } finally {
      await server.stop()
    }
  })
})
