/** Who is calling and in which tier: resolvers, auth-hook identities, IPs, and the hashed keys they become. */
import { describe, expect, it } from 'vitest'
import { hashIdentity, identityHasher } from '../../lib/identity/hash.js'
import { appWith, ok, statuses, storeCases } from '../helpers/app.js'
import { hasRedis, redisClient } from '../helpers/redis.js'

const KEYS: Record<string, string> = { 'key-free': 'free', 'key-pro-1': 'premium', 'key-pro-2': 'premium' }

describe.each(storeCases)('tiers and identities on the $name store', (store) => {
  const tierOptions = {
    tiers: { free: 1, premium: { multiplier: 5 } },
    key: (req: { headers: Record<string, unknown>, ip: string }) => (req.headers['x-api-key'] as string | undefined) ?? req.ip,
    // async, and looked up on the server: never read from a header the caller controls
    tier: async (req: { headers: Record<string, unknown> }) => KEYS[req.headers['x-api-key'] as string] ?? null,
  }

  it('multiplies max and burst by the tier, one bucket per caller in a tier', async () => {
    const app = await appWith(store, tierOptions as never)
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, async (req) => ({ tier: req.rateLimit?.tier }))
    const as = (key: string) => ({ url: '/p', headers: { 'x-api-key': key } })
    expect(await statuses(app, 3, as('key-free'))).toEqual([200, 200, 429])
    const pro = await app.inject(as('key-pro-1'))
    expect(pro.json()).toEqual({ tier: 'premium' })
    expect(pro.headers['ratelimit-policy']).toBe('"2/minute";q=10;w=60')
    expect(pro.headers.ratelimit).toBe('"2/minute";r=9;t=6')
    expect(await statuses(app, 10, as('key-pro-1'))).toEqual([...Array(9).fill(200), 429])
    // another premium caller is not affected by the first one
    expect(await statuses(app, 1, as('key-pro-2'))).toEqual([200])
  })

  it('uses a route\'s limits for a named tier as written', async () => {
    const app = await appWith(store, tierOptions as never)
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'], tiers: { premium: ['3/minute'] } } } }, ok)
    const pro = await app.inject({ url: '/p', headers: { 'x-api-key': 'key-pro-1' } })
    expect(pro.headers['ratelimit-policy']).toBe('"3/minute";q=3;w=60')
    expect(await statuses(app, 3, { url: '/p', headers: { 'x-api-key': 'key-pro-1' } })).toEqual([200, 200, 429])
  })

  it('multiplies the global limits by the tier too', async () => {
    const app = await appWith(store, { ...tierOptions, global: ['4/hour'] } as never)
    app.get('/p', { config: { rateLimit: { limits: ['100/minute'], tiers: { premium: ['100/minute'] } } } }, ok)
    const pro = await app.inject({ url: '/p', headers: { 'x-api-key': 'key-pro-1' } })
    expect(pro.headers['ratelimit-policy']).toBe('"100/minute";q=100;w=60, "global 4/hour";q=20;w=3600')
  })

  it('limits an unknown tier as a caller without a tier, and warns once per name', async () => {
    const app = await appWith(store, { tiers: { premium: 5 }, tier: (req) => req.headers['x-test-tier'] as string })
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, async (req) => ({ tier: req.rateLimit?.tier }))
    const r = await app.inject({ url: '/p', headers: { 'x-test-tier': 'enterprise' } })
    expect(r.headers['ratelimit-policy']).toBe('"2/minute";q=2;w=60')
    expect(r.json()).toEqual({ tier: 'enterprise' })
    expect(await statuses(app, 2, { url: '/p', headers: { 'x-test-tier': 'enterprise' } })).toEqual([200, 429])
    expect(app.logs.filter(l => l.level === 40 && l.tier === 'enterprise')).toHaveLength(1)
  })

  it('answers 500 when the tier resolver returns something that is not a name', async () => {
    const app = await appWith(store, { tiers: { premium: 5 }, tier: () => 5 as never })
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    const r = await app.inject('/p')
    expect(r.statusCode).toBe(500)
    expect(app.logs.find(l => l.level === 50)?.err?.code).toBe('FST_GCRA_INVALID_TIER')
  })

  it('answers 500 when the key resolver returns nothing usable', async () => {
    const app = await appWith(store, { key: () => undefined as never })
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    expect((await app.inject('/p')).statusCode).toBe(500)
    expect(app.logs.find(l => l.level === 50)?.err?.code).toBe('FST_GCRA_INVALID_KEY')
  })

  it('groups IPv6 clients by /64 and keeps IPv4 clients apart', async () => {
    const app = await appWith(store)
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    const from = (remoteAddress: string) => ({ url: '/p', remoteAddress })
    expect(await statuses(app, 1, from('2001:db8:1:2::1'))).toEqual([200])
    expect(await statuses(app, 1, from('2001:db8:1:2:ffff:ffff:ffff:fffe'))).toEqual([200])
    expect(await statuses(app, 1, from('2001:db8:1:2::7'))).toEqual([429])
    expect(await statuses(app, 1, from('2001:db8:1:3::1'))).toEqual([200])
    expect(await statuses(app, 2, from('192.0.2.1'))).toEqual([200, 200])
    expect(await statuses(app, 1, from('::ffff:192.0.2.1'))).toEqual([429])
  })

  it('keeps a 16 KiB API key usable as an identity', async () => {
    const secret = `sk-${'x'.repeat(16 * 1024)}`
    const app = await appWith(store, tierOptions as never)
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    expect(await statuses(app, 2, { url: '/p', headers: { 'x-api-key': secret } })).toEqual([200, 429])
    expect(await statuses(app, 1, { url: '/p', headers: { 'x-api-key': `${secret}y` } })).toEqual([200])
  })
})

describe.runIf(hasRedis)('store keys in Redis', () => {
  it('hash the identity, share one hash tag per caller, and expire when the bucket is full again', async () => {
    const client = redisClient()
    const secret = 'sk-live-very-secret'
    const app = await appWith({ name: 'redis', options: () => ({ store: { redis: client }, prefix: 'keys-test' }) }, {
      global: ['10/hour'],
      key: (req) => req.headers['x-api-key'] as string,
    })
    app.get('/p', { config: { rateLimit: { limits: ['6/minute'] } } }, ok)
    await app.inject({ url: '/p', headers: { 'x-api-key': secret } })
    const keys = await client.keys('keys-test:*')
    expect(keys).toHaveLength(2)
    for (const key of keys) {
      expect(key).toMatch(/^keys-test:\{[A-Za-z0-9_-]{22}\}:[A-Za-z0-9_-]{12}$/)
      expect(key).not.toContain('secret')
    }
    expect(new Set(keys.map(k => k.split('}')[0])).size).toBe(1)
    const ttls = (await Promise.all(keys.map(k => client.pttl(k)))).sort((a, b) => a - b)
    // one request: 10 s for 6/minute, 6 min for 10/hour
    expect(ttls[0]).toBeGreaterThan(9_000)
    expect(ttls[0]).toBeLessThanOrEqual(10_000)
    expect(ttls[1]).toBeGreaterThan(359_000)
    expect(ttls[1]).toBeLessThanOrEqual(360_000)
  })
})

describe.runIf(hasRedis)('keySecret', () => {
  it('keys the identity hash: unlinkable without the secret, shared by instances that have it', async () => {
    const client = redisClient()
    const prefix = 'secret-test'
    const make = async (keySecret?: string) => {
      const app = await appWith({ name: 'redis', options: () => ({ store: { redis: client }, prefix }) }, keySecret === undefined ? {} : { keySecret })
      app.get('/p', { config: { rateLimit: { limits: ['1/hour'] } } }, ok)
      await app.ready()
      return app
    }
    const secret = 'a-long-server-side-secret'
    const [a, b, plain] = await Promise.all([make(secret), make(secret), make()])
    const from = { url: '/p', remoteAddress: '198.51.100.23' }
    expect(await statuses(a, 1, from)).toEqual([200])
    // the same secret, the same bucket
    expect(await statuses(b, 1, from)).toEqual([429])
    // without it, another bucket: the key is not the plain hash of the address
    expect(await statuses(plain, 1, from)).toEqual([200])
    const tags = new Set((await client.keys(`${prefix}:*`)).map(k => k.split('}')[0]!.split('{')[1]))
    expect(tags.size).toBe(2)
    expect(tags.has(hashIdentity('198.51.100.23'))).toBe(true)
    expect(tags.has(identityHasher(secret)('198.51.100.23'))).toBe(true)
  })
})

