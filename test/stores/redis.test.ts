import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { RedisStore } from '../../lib/stores/redis.js'
import gcra from '../../lib/index.js'
import { appWith, newApp, statuses, ok } from '../helpers/app.js'
import { startRedis } from '../setup/redis.js'
import { hasRedis, randomPrefix, redisClient } from '../helpers/redis.js'

describe.runIf(hasRedis)('redis store', () => {
  it('registers its script once per client, and two plugins can share the client', async () => {
    const client = redisClient()
    const a = new RedisStore(client, false)
    const b = new RedisStore(client, false)
    const key = `${randomPrefix()}:{x}:0`
    expect((await a.decide([key], [2_000_000], [1_000_000], true)).allowed).toBe(true)
    expect((await b.decide([key], [2_000_000], [1_000_000], true)).allowed).toBe(true)
    expect((await a.decide([key], [2_000_000], [1_000_000], true)).allowed).toBe(false)
  })

  it('survives SCRIPT FLUSH without a failed request (EVALSHA falls back to EVAL)', async () => {
    const client = redisClient()
    const app = await appWith({ name: 'redis', options: () => ({ store: { redis: client }, prefix: randomPrefix() }) })
    app.get('/p', { config: { rateLimit: { limits: ['3/minute'] } } }, ok)
    expect(await statuses(app, 1, '/p')).toEqual([200])
    await redisClient().script('FLUSH')
    expect(await statuses(app, 3, '/p')).toEqual([200, 200, 429])
    expect(app.logs.filter(l => l.level >= 50)).toEqual([])
  })

  it('does not write a bucket for a refused request', async () => {
    const client = redisClient()
    const prefix = randomPrefix()
    const app = await appWith({ name: 'redis', options: () => ({ store: { redis: client }, prefix }) })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute', '1/hour'] } } }, ok)
    await app.inject('/p')
    const keys = (await client.keys(`${prefix}:*`)).sort()
    const before = await Promise.all(keys.map(k => client.get(k)))
    expect(await statuses(app, 3, '/p')).toEqual([429, 429, 429])
    expect(await Promise.all(keys.map(k => client.get(k)))).toEqual(before)
  })
})

describe.runIf(hasRedis)('redis store start-up checks', () => {
  it('warn once when Redis may evict buckets (maxmemory-policy is not noeviction)', async () => {
    const server = await startRedis(['--maxmemory-policy', 'allkeys-lru'])
    try {
      const evicting = newApp()
      await evicting.register(gcra, { store: { redis: `redis://127.0.0.1:${server.port}` } })
      await evicting.ready()
      expect(evicting.logs.filter(l => l.msg.includes('maxmemory-policy is allkeys-lru'))).toHaveLength(1)
      // a client given to the plugin while still connecting (and not queueing) is checked once ready
      const connecting = new Redis(`redis://127.0.0.1:${server.port}`, { enableOfflineQueue: false, lazyConnect: true })
      const given = newApp()
      given.addHook('onClose', async () => { connecting.disconnect() })
      await given.register(gcra, { store: { redis: connecting } })
      void connecting.connect()
      await given.ready()
      expect(given.logs.filter(l => l.msg.includes('maxmemory-policy is allkeys-lru'))).toHaveLength(1)
      await given.close()
      const safe = await appWith({ name: 'redis', options: () => ({ store: { redis: redisClient() } }) })
      await safe.ready()
      expect(safe.logs.filter(l => l.msg.includes('maxmemory-policy'))).toEqual([])
      await evicting.close()
    } finally {
      await server.stop()
    }
  })
})
