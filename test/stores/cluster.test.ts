// The Redis store on a real 3-master Redis Cluster.
import { describe, expect, it } from 'vitest'
import gcra from '../../lib/index.js'
import { newApp, ok } from '../helpers/app.js'
import { hasRedis, randomPrefix } from '../helpers/redis.js'
import { clusterFixture } from '../helpers/cluster.js'
import { hashIdentity } from '../../lib/identity/hash.js'
import { RedisStore, slotOf } from '../../lib/stores/redis.js'
import { incrementUs, toBucket } from '../../lib/gcra/math.js'
import { GcraModel, type ModelLimit } from '../helpers/model.js'

describe.runIf(hasRedis)('redis store on Redis Cluster', () => {
  const { cluster, connect } = clusterFixture(3)

  async function app (prefix: string) {
    const a = newApp()
    await a.register(gcra, { store: { redis: connect() }, prefix, global: ['1000/hour'] })
    a.post('/predict', { config: { rateLimit: { limits: [{ max: 10, per: '1 hour', burst: 23 }, '500/day'] } } }, ok)
    await a.ready()
    return a
  }

  it('runs every request\'s keys in one slot: stacked and global limits, many callers, no CROSSSLOT', async () => {
    const prefix = randomPrefix()
    const a = await app(prefix)
    const callers = Array.from({ length: 60 }, (_, i) => `10.9.${i >> 8}.${i & 255}`)
    for (const remoteAddress of callers) {
      const r = await a.inject({ method: 'POST', url: '/predict', remoteAddress })
      expect(r.statusCode).toBe(200)
      expect(r.headers.ratelimit).toBe('"10/hour burst 23";r=22;t=360, "500/day";r=499;t=173, "global 1000/hour";r=999;t=4')
    }
    expect(a.logs.filter(l => l.level >= 50)).toEqual([])
    // each caller's three keys sit on one node; the callers spread over every node
    const client = connect()
    if (client.status !== 'ready') await new Promise(resolve => client.once('ready', resolve))
    const masters = client.nodes('master')
    expect(masters).toHaveLength(3)
    const perNode = await Promise.all(masters.map(node => node.keys(`${prefix}:*`)))
    expect(perNode.every(keys => keys.length > 0)).toBe(true)
    const tags = perNode.map(keys => new Set(keys.map(k => k.split('}')[0])))
    for (let i = 0; i < tags.length; i++) {
      for (let j = i + 1; j < tags.length; j++) expect([...tags[i]!].filter(t => tags[j]!.has(t))).toEqual([])
    }
    expect(perNode.flat()).toHaveLength(callers.length * 3)
  }, 30_000)

  it('takes concurrency slots and settles costs on the Cluster: caller and route keys in their own slots', async () => {
    const a = newApp()
    await a.register(gcra, { store: { redis: connect() }, prefix: randomPrefix() })
    let open!: () => void
    const gate = new Promise<void>(resolve => { open = resolve })
    a.post('/gen', { config: { rateLimit: { limits: ['100/minute'], cost: 50, concurrency: { perCaller: 1, route: 4 } } } }, async (_req, reply) => {
      await gate
      const info = await reply.rateLimit!.settle(5)
      return { remaining: info?.remaining }
    })
    await a.ready()
    const callers = Array.from({ length: 6 }, (_, i) => `10.8.0.${i}`)
    const pending = [...callers, callers[0]!].map(remoteAddress => a.inject({ method: 'POST', url: '/gen', remoteAddress }))
    await new Promise(resolve => setTimeout(resolve, 300))
    open()
    const codes = (await Promise.all(pending)).map(r => r.statusCode)
    // 4 route slots: 4 served; the 2 other callers get 503; the repeat caller 429 or 503
    expect(codes.filter(c => c === 200)).toHaveLength(4)
    expect(codes.filter(c => c === 200 || c === 503 || c === 429)).toHaveLength(7)
    for (const r of await Promise.all(pending)) if (r.statusCode === 200) expect(r.json().remaining).toBeGreaterThanOrEqual(95)
    const deadline = Date.now() + 2000
    while (a.rateLimiter.stats().slotsHeld > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    expect(a.rateLimiter.stats().slotsHeld).toBe(0)
    expect(a.logs.filter(l => l.level >= 50)).toEqual([])
  }, 30_000)

  it('admits exactly the burst under 200 concurrent requests from two instances', async () => {
    const prefix = randomPrefix()
    const [a, b] = await Promise.all([app(prefix), app(prefix)])
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).inject({ method: 'POST', url: '/predict' })))
    expect(replies.filter(r => r.statusCode === 200)).toHaveLength(23)
    expect(replies.filter(r => r.statusCode === 429)).toHaveLength(177)
  }, 30_000)

  it('coalesces one turn\'s decisions into one call per master, each decided exactly as alone', async () => {
    const client = connect()
    if (client.status !== 'ready') await new Promise(resolve => client.once('ready', resolve))
    const store = new RedisStore(client, false)
    let calls = 0
    const methods = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    const original = methods.fastifyGcraDecideCrossSlotV3!
    methods.fastifyGcraDecideCrossSlotV3 = function (...args: unknown[]) { calls++; return original.apply(this, args) }
    const prefix = randomPrefix()
    // 60 callers, spread over every master, each asking three times in the same turn
    const tags = Array.from({ length: 60 }, (_, i) => hashIdentity(`caller-${i}`))
    const masters = new Set(tags.map(t => client.slots[slotOf(t)]![0]))
    expect(masters.size).toBe(3)
    const limits: ModelLimit[] = [{ max: 2, perMs: 60_000, burst: 2 }, { max: 100, perMs: 3_600_000, burst: 100 }]
    const buckets = limits.map(l => toBucket(l.max, l.perMs, l.burst, 1))
    const caps = buckets.map(b => b.capacityUs)
    const incs = buckets.map(b => incrementUs(1, b.intervalUs))
    const asked = [...tags, ...tags, ...tags].map(tag => ({ keys: [`${prefix}:{${tag}}:minute`, `${prefix}:{${tag}}:hour`] }))
    const replies = await Promise.all(asked.map(a => store.decide(a.keys, caps, incs, true)))
    expect(calls).toBe(3)
    // one call per master, one clock per call: the model replays each call's decisions in order at its clock
    const model = new GcraModel()
    replies.forEach((reply, i) => {
      const want = model.request(asked[i]!.keys, limits, 1, reply.nowUs)
      expect([reply.allowed, reply.tatsUs]).toEqual([want.allowed, want.tatsUs])
    })
    expect(replies.filter(r => r.allowed)).toHaveLength(120)
  })

  it('computes the slot of a hash tag as Redis does', async () => {
    const client = connect()
    if (client.status !== 'ready') await new Promise(resolve => client.once('ready', resolve))
    // the tags the plugin writes are base64url hashes; any brace-free text hashes the same way
    for (const tag of ['a', 'user-1', hashIdentity('127.0.0.1'), hashIdentity('::1'), 'ключ']) {
      expect(slotOf(tag)).toBe(await client.cluster('KEYSLOT', `x:{${tag}}:y`))
    }
  })

  it('warns at start-up that a Cluster re-sends decisions unless retryDelayOnFailover is 0', async () => {
    const risky = newApp()
    await risky.register(gcra, { store: { redis: connect() }, prefix: randomPrefix() })
    await risky.ready()
    expect(risky.logs.find(l => l.msg.includes('may run a decision twice or late'))?.msg).toContain('retryDelayOnFailover: 0')
    const safe = connect({ retryDelayOnFailover: 0, enableOfflineQueue: false, redisOptions: { autoResendUnfulfilledCommands: false } })
    const quiet = newApp()
    await quiet.register(gcra, { store: { redis: safe }, prefix: randomPrefix() })
    await quiet.ready()
    expect(quiet.logs.filter(l => l.msg.includes('may run a decision twice or late'))).toEqual([])
  })

  // last: it kills a master
  it('keeps serving callers on the live masters while one master is down, under sustained load', async () => {
    const a = newApp()
    await a.register(gcra, { store: { redis: connect() }, prefix: randomPrefix(), storeTimeoutMs: 100, onStoreError: 'deny' })
    a.get('/p', { config: { rateLimit: { limits: ['100000/minute'] } } }, ok)
    await a.ready()
    const callers = Array.from({ length: 30 }, (_, i) => `10.8.0.${i + 1}`)
    for (const remoteAddress of callers) expect((await a.inject({ url: '/p', remoteAddress })).statusCode).toBe(200)
    await cluster().kill(0)
    // 1.5 s of traffic from every caller: the dead master's callers trip its breaker,
    // which must not stop the others
    const seen = new Map<string, Set<number>>(callers.map(c => [c, new Set<number>()]))
    const started = Date.now()
    let slowest = 0
    await Promise.all(callers.map(async (remoteAddress) => {
      while (Date.now() - started < 1500) {
        const t = Date.now()
        const r = await a.inject({ url: '/p', remoteAddress })
        slowest = Math.max(slowest, Date.now() - t)
        // an answer that needed no I/O (an open breaker) resolves in microtasks: yield as a real client would
        await new Promise(resolve => setImmediate(resolve))
        seen.get(remoteAddress)!.add(r.statusCode === 200 && r.headers.ratelimit !== undefined ? 200 : r.statusCode)
      }
    }))
    expect(slowest).toBeLessThan(1500)
    const served = callers.filter(c => [...seen.get(c)!].every(s => s === 200))
    const denied = callers.filter(c => [...seen.get(c)!].every(s => s === 503))
    // every caller is either always served by its master or always denied: none is caught by another's outage
    expect(served.length + denied.length).toBe(callers.length)
    expect(served.length).toBeGreaterThan(0)
    expect(denied.length).toBeGreaterThan(0)
  }, 30_000)
})
