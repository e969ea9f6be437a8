// Real faults on a private redis-server, under steady load, for each onStoreError
// policy: killed and restarted, put to sleep (DEBUG SLEEP), scripts flushed.
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import gcra from '../../lib/index.js'
import type { StoreErrorPolicy } from '../../lib/options/types.js'
import { newApp, ok } from '../helpers/app.js'
import { hasRedis, randomPrefix } from '../helpers/redis.js'
import { startRedis } from '../setup/redis.js'
import { createEngine } from '../../lib/engine.js'
import { normaliseLimits, normaliseOptions } from '../../lib/options/normalise.js'
import { MemoryStore } from '../../lib/stores/memory.js'
import type { RemoteStore, StoreReply } from '../../lib/stores/contract.js'

const LIMIT = { max: 20, per: '1s', burst: 10 } // T = 50 ms
const TIMEOUT_MS = 100

interface Sample { start: number, end: number, status: number, fromStore: boolean, policyField: boolean }

type Server = Awaited<ReturnType<typeof startRedis>>

describe.runIf(hasRedis)('faults under steady load', () => {
  let server: Server
  let port: number
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  const admins: Redis[] = []

  const admin = (): Redis => {
    const c = new Redis({ port, maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null })
    admins.push(c)
    return c
  }
  const restart = async (): Promise<void> => { server = await startRedis(['--enable-debug-command', 'yes'], port) }

  beforeAll(async () => {
    await restart().catch(async () => { server = await startRedis(['--enable-debug-command', 'yes']) })
    port = server.port
    process.on('unhandledRejection', onUnhandled)
  })
  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled)
    await server.stop()
  })
  afterEach(() => { for (const c of admins.splice(0)) c.disconnect() })

  async function appFor (policy: StoreErrorPolicy) {
    const app = newApp()
    await app.register(gcra, { store: { redis: `redis://127.0.0.1:${port}` }, prefix: randomPrefix(), storeTimeoutMs: TIMEOUT_MS, onStoreError: policy })
    app.get('/p', { config: { rateLimit: { limits: [LIMIT] } } }, ok)
    await app.ready()
    return app
  }

  /** 4 callers' worth of load on one identity for `durationMs`, with `faults` at their times. */
  async function load (app: Awaited<ReturnType<typeof appFor>>, durationMs: number, faults: Array<[number, () => Promise<void>]>) {
    const t0 = Date.now()
    const samples: Sample[] = []
    const faultRuns = faults.map(([at, run]) => new Promise<void>((resolve, reject) => setTimeout(() => { run().then(resolve, reject) }, at)))
    const worker = async (): Promise<void> => {
      while (Date.now() - t0 < durationMs) {
        const start = Date.now() - t0
        const r = await app.inject('/p')
        samples.push({ start, end: Date.now() - t0, status: r.statusCode, fromStore: r.headers.ratelimit !== undefined, policyField: r.headers['ratelimit-policy'] !== undefined })
        await new Promise(resolve => setTimeout(resolve, 10))
      }
    }
    await Promise.all([...Array.from({ length: 4 }, worker), ...faultRuns])
    return samples
  }

  const within = (samples: Sample[], from: number, to: number) => samples.filter(s => s.start >= from && s.end <= to)

  /** What a request gets while the store is out, per policy (429 may come from the deny cache). */
  function expectOutage (policy: StoreErrorPolicy, during: Sample[]): void {
    expect(during.length).toBeGreaterThan(10)
    expect(during.every(s => !s.fromStore)).toBe(true)
    if (policy === 'allow') {
      expect(during.every(s => s.status === 200 || s.status === 429)).toBe(true)
      expect(during.some(s => s.status === 200 && !s.policyField)).toBe(true)
    } else if (policy === 'deny') {
      expect(during.every(s => s.status === 503 || s.status === 429)).toBe(true)
      expect(during.some(s => s.status === 503)).toBe(true)
    } else {
      expect(during.every(s => (s.status === 200 || s.status === 429) && s.policyField)).toBe(true)
      expect(during.some(s => s.status === 200)).toBe(true)
    }
  }

  /**
   * What every fault must show: no unhandled rejection, no request held much past the
   * store timeout, the policy's answers while Redis is out, and a store decision again
   * within a second of Redis being back. Returns how long that took, and the slowest request.
   */
  function expectFaultHandled (policy: StoreErrorPolicy, samples: Sample[], outFrom: number, backAt: number): { recoveredMs: number, maxLatencyMs: number } {
    expect(unhandled).toEqual([])
    const maxLatencyMs = Math.max(...samples.map(s => s.end - s.start))
    expect(maxLatencyMs).toBeLessThan(1500)
    expectOutage(policy, within(samples, outFrom + 300, backAt))
    const recovered = samples.find(s => s.start >= backAt && s.fromStore)
    expect(recovered).toBeDefined()
    expect(recovered!.end - backAt).toBeLessThan(1000)
    return { recoveredMs: recovered!.end - backAt, maxLatencyMs }
  }

  /** Store-decided admissions from `from` on stay within burst + rate × elapsed. */
  function expectNoOverAdmission (samples: Sample[], from: number, burstLeft: number): void {
    const after = samples.filter(s => s.start >= from)
    const admitted = after.filter(s => s.status === 200 && s.fromStore).length
    const elapsedS = (Math.max(...after.map(s => s.end)) - from) / 1000
    expect(admitted).toBeLessThanOrEqual(Math.floor(burstLeft + LIMIT.max * elapsedS))
    expect(admitted).toBeGreaterThan(0)
  }

  for (const policy of ['allow', 'deny', 'local'] as const) {
    it(`redis-server killed and restarted: '${policy}'`, async () => {
      const app = await appFor(policy)
      let killedAt = 0
      let backAt = 0
      const t0 = Date.now()
      const samples = await load(app, 3500, [
        [700, async () => { const exited = new Promise(resolve => server.process.once('exit', resolve)); server.process.kill('SIGKILL'); await exited; killedAt = Date.now() - t0 }],
        [2000, async () => { await restart(); backAt = Date.now() - t0 }],
      ])
      const { recoveredMs, maxLatencyMs } = expectFaultHandled(policy, samples, killedAt, backAt)
      // the restarted Redis kept nothing: a full bucket from then on, and no more
      expectNoOverAdmission(samples, backAt, LIMIT.burst)
      console.log(`[fault matrix] kill+restart '${policy}': ${samples.length} requests in 3.5 s; recovered ${recoveredMs} ms after Redis answered; max latency ${maxLatencyMs} ms`)
    }, 30_000)

    it(`redis-server asleep (DEBUG SLEEP 1): '${policy}'`, async () => {
      const app = await appFor(policy)
      let sleptAt = 0
      let wokeAt = 0
      const t0 = Date.now()
      const samples = await load(app, 3000, [
        [700, async () => { const a = admin(); await a.connect(); sleptAt = Date.now() - t0; await a.call('DEBUG', 'SLEEP', '1'); wokeAt = Date.now() - t0 }],
      ])
      const { recoveredMs, maxLatencyMs } = expectFaultHandled(policy, samples, sleptAt, wokeAt)
      // Redis kept its state: over the whole run, store-decided admissions stay within the bound
      expectNoOverAdmission(samples, 0, LIMIT.burst)
      console.log(`[fault matrix] DEBUG SLEEP '${policy}': recovered ${recoveredMs} ms after Redis woke; max latency ${maxLatencyMs} ms`)
    }, 30_000)
  }

  it('SCRIPT FLUSH twice under load: not one failed request', async () => {
    const app = await appFor('deny')
    const flush = async (): Promise<void> => { const a = admin(); await a.connect(); await a.script('FLUSH') }
    const samples = await load(app, 1500, [[400, flush], [900, flush]])
    expect(unhandled).toEqual([])
    expect(samples.filter(s => s.status === 503)).toEqual([])
    expect(samples.every(s => s.status === 200 || s.status === 429)).toBe(true)
    expectNoOverAdmission(samples, 0, LIMIT.burst)
  }, 30_000)
})

describe.runIf(hasRedis)('a decision in flight when the connection drops', () => {
  it('is not replayed by the plugin\'s own client after the reconnect (a replay would charge twice)', async () => {
    let server = await startRedis(['--enable-debug-command', 'yes'])
    const port = server.port
    const sleeper = new Redis({ port, lazyConnect: true, retryStrategy: () => null })
    const risky = new Redis({ port, autoResendUnfulfilledCommands: true, retryStrategy: () => 50 })
    risky.on('error', () => {})
    try {
      const prefix = randomPrefix()
      const own = newApp()
      await own.register(gcra, { store: { redis: `redis://127.0.0.1:${port}` }, prefix: `${prefix}own`, storeTimeoutMs: 100, onStoreError: 'deny' })
      const replaying = newApp()
      await replaying.register(gcra, { store: { redis: risky }, prefix: `${prefix}risky`, storeTimeoutMs: 100, onStoreError: 'deny' })
      await Promise.all([own.ready(), replaying.ready()])
      expect(replaying.logs.some(l => l.msg.includes('may run a decision twice or late'))).toBe(true)
      expect(own.logs.some(l => l.msg.includes('may run a decision twice or late'))).toBe(false)

      // hold the server, send one decision from each app, then kill the server with both unexecuted
      await sleeper.connect()
      const asleep = sleeper.call('DEBUG', 'SLEEP', '3').catch(() => {})
      await new Promise(resolve => setTimeout(resolve, 100))
      await expect(own.rateLimiter.consume('victim', ['5/hour'])).rejects.toThrow(/did not answer within 100 ms/)
      await expect(replaying.rateLimiter.consume('victim', ['5/hour'])).rejects.toThrow(/did not answer within 100 ms/)
      const exited = new Promise(resolve => server.process.once('exit', resolve))
      server.process.kill('SIGKILL')
      await exited
      await asleep
      server = await startRedis([], port)
      // let both clients reconnect and flush whatever they kept
      await new Promise(resolve => setTimeout(resolve, 1500))
      const check = new Redis({ port })
      const ownKeys = await check.keys(`${prefix}own:*`)
      const replayedKeys = await check.keys(`${prefix}risky:*`)
      check.disconnect()
      expect(ownKeys).toEqual([])
      // the hazard the warning names: the same request charged after all, with no one served
      expect(replayedKeys).toHaveLength(1)
    } finally {
      sleeper.disconnect()
      risky.disconnect()
      await server.stop()
    }
  }, 30_000)
})

describe.runIf(hasRedis)('what Redis forgets, the plugin forgets', () => {
  it('drops remembered refusals when Redis comes back empty', async () => {
    let server = await startRedis()
    const port = server.port
    try {
      const app = newApp()
      await app.register(gcra, { store: { redis: `redis://127.0.0.1:${port}` }, storeTimeoutMs: 100, onStoreError: 'allow' })
      app.get('/p', { config: { rateLimit: { limits: ['1/hour'] } } }, ok)
      await app.ready()
      expect((await app.inject('/p')).statusCode).toBe(200)
      expect((await app.inject('/p')).statusCode).toBe(429)
      const exited = new Promise(resolve => server.process.once('exit', resolve))
      server.process.kill('SIGKILL')
      await exited
      server = await startRedis([], port)
      // Redis holds nothing now: the next request is Redis's to decide, and it admits
      let status = 0
      for (let i = 0; i < 40 && status !== 200; i++) {
        await new Promise(resolve => setTimeout(resolve, 50))
        const r = await app.inject('/p')
        status = r.headers.ratelimit === undefined ? 0 : r.statusCode
      }
      expect(status).toBe(200)
      await app.close()
    } finally {
      await server.stop()
    }
  }, 20_000)

  it('reset() wins over a refusal that was in flight when it ran', async () => {
    const server = await startRedis()
    try {
      const app = newApp()
      await app.register(gcra, { store: { redis: `redis://127.0.0.1:${server.port}` } })
      await app.ready()
      expect((await app.rateLimiter.consume('racer', ['1/hour'])).allowed).toBe(true)
      const inFlight = app.rateLimiter.consume('racer', ['1/hour'])
      await app.rateLimiter.reset('racer')
      expect((await inFlight).allowed).toBe(false)
      expect((await app.rateLimiter.consume('racer', ['1/hour'])).allowed).toBe(true)
      await app.close()
    } finally {
      await server.stop()
    }
  })

  it('starts and stops within bounded time on a Redis that accepts and never answers', async () => {
    const { createServer } = await import('node:net')
    const sockets: Array<import('node:net').Socket> = []
    const silent = createServer(socket => { sockets.push(socket) })
    await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
    try {
      const app = newApp()
      const t0 = Date.now()
      await app.register(gcra, { store: { redis: `redis://127.0.0.1:${(silent.address() as { port: number }).port}` }, onStoreError: 'deny' })
      app.get('/p', { config: { rateLimit: { limits: ['1/hour'] } } }, ok)
      await app.ready()
      expect(Date.now() - t0).toBeLessThan(4000)
      expect((await app.inject('/p')).statusCode).toBe(503)
      const t1 = Date.now()
      await app.close()
      expect(Date.now() - t1).toBeLessThan(3000)
    } finally {
      for (const s of sockets) s.destroy()
      silent.close()
    }
  }, 20_000)
})

describe('a store that flaps, with onStoreError: \'local\'', () => {
  it('keeps the in-memory state from one outage to the next, and logs no outage below the breaker\'s threshold', async () => {
    let down = false
    const tats = new MemoryStore()
    const decide = async (keys: readonly string[], caps: readonly number[], incs: readonly number[], charge: boolean): Promise<StoreReply> => { if (down) throw new Error('flap'); return tats.decide(keys, caps, incs, charge) }
    const flaky = {
      remote: true,
      decide,
      decideThen: (keys: readonly string[], caps: readonly number[], incs: readonly number[], charge: boolean, _slack: number, resolve: (r: StoreReply) => void, reject: (e: unknown) => void) => { decide(keys, caps, incs, charge).then(resolve, reject) },
      shardOf: () => '',
      onReconnect: () => {},
      delete: () => {},
      close: async () => {},
    } as unknown as RemoteStore
    const logs: string[] = []
    const log = { info: (_o: unknown, m?: string) => logs.push(`info ${m}`), error: (_o: unknown, m?: string) => logs.push(`error ${m}`), warn: () => {}, debug: () => {} } as never
    const { planner, decider } = createEngine(normaliseOptions({ store: { redis: 'redis://127.0.0.1:1' }, onStoreError: 'local' }), flaky, log)
    const plan = planner.route({ label: 'test', scopeId: 'scope:t', limits: normaliseLimits(['10/hour'], 'l'), withGlobal: false, where: 'test', onStoreError: 'local' })
    const decideFor = (key: string) => decider.decide(key, plan.base, plan.base.unitIncrements, { charge: true, onStoreError: 'local' })
    let admitted = 0
    for (let outage = 0; outage < 5; outage++) {
      down = true
      // below the threshold: two failures, then the store answers again
      for (let i = 0; i < 2; i++) if ((await decideFor('caller')).reply?.allowed === true) admitted++
      for (let i = 0; i < 4; i++) {
        down = i === 3
        await decideFor(`caller-${outage}-${i}`)
      }
      down = false
      await decideFor('other')
    }
    // five short outages of one caller: the in-memory buckets kept count across them
    expect(admitted).toBe(10)
    expect(logs.filter(l => l.startsWith('error'))).toEqual([])
  })
})

