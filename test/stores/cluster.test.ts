// The Redis store on a real 3-master Redis Cluster.
import { Cluster } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import gcra from '../../lib/index.js'
import { newApp, ok } from '../helpers/app.js'
import { hasRedis, randomPrefix } from '../helpers/redis.js'
import { startCluster, type TestCluster } from '../setup/cluster.js'

describe.runIf(hasRedis)('redis store on Redis Cluster', () => {
  let cluster: TestCluster
  const clients: Cluster[] = []

  beforeAll(async () => { cluster = await startCluster(3) }, 60_000)
  afterAll(async () => { await cluster?.stop() })
  afterEach(async () => { await Promise.all(clients.splice(0).map(c => c.quit().catch(() => c.disconnect()))) })

  const connect = (): Cluster => {
    const client = new Cluster(cluster.ports.map(port => ({ host: '127.0.0.1', port })))
    clients.push(client)
    return client
  }

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

  it('admits exactly the burst under 200 concurrent requests from two instances', async () => {
    const prefix = randomPrefix()
    const [a, b] = await Promise.all([app(prefix), app(prefix)])
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).inject({ method: 'POST', url: '/predict' })))
    expect(replies.filter(r => r.statusCode === 200)).toHaveLength(23)
    expect(replies.filter(r => r.statusCode === 429)).toHaveLength(177)
  }, 30_000)
})
