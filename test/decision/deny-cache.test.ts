import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DenyCache, localClockUs } from '../../lib/decision/deny-cache.js'
import { incrementUs, toBucket } from '../../lib/gcra/math.js'
import { MemoryStore } from '../../lib/stores/memory.js'
import type { StoreReply } from '../../lib/stores/contract.js'
import { appWith, ok, statuses } from '../helpers/app.js'
import { hasRedis, randomPrefix, redisClient } from '../helpers/redis.js'

describe('local deny cache', () => {
  it('never refuses what the store would admit, whatever other instances charge', async () => {
    let localRefusals = 0
    let storeCalls = 0
    await fc.assert(fc.asyncProperty(
      fc.record({
        max: fc.integer({ min: 1, max: 10 }),
        burst: fc.integer({ min: 1, max: 10 }),
        steps: fc.array(fc.record({ instance: fc.integer({ min: 0, max: 2 }), cost: fc.integer({ min: 1, max: 4 }), waitUs: fc.integer({ min: 0, max: 30_000 }) }), { minLength: 1, maxLength: 60 }),
      }),
      async ({ max, burst, steps }) => {
        // the store runs on its own clock, ahead of the local one by a fixed offset
        const offsetUs = 1_000_000_000
        const store = new MemoryStore({ clock: () => localClockUs() + offsetUs })
        const bucket = toBucket(max, 100, burst, 1) // max per 100 ms: refills within the run
        const caches = [new DenyCache(), new DenyCache(), new DenyCache()]
        for (const step of steps) {
          const inc = [incrementUs(step.cost, bucket.intervalUs)]
          const cache = caches[step.instance]!
          const local = cache.check('caller', 1, [bucket.capacityUs], inc)
          if (local !== undefined) {
            // a local refusal must be one the store makes too
            expect(store.decide(['k'], [bucket.capacityUs], inc, false).allowed).toBe(false)
            localRefusals++
          } else {
            storeCalls++
            const sentAt = localClockUs()
            const reply = store.decide(['k'], [bucket.capacityUs], inc, true)
            if (!reply.allowed) cache.remember('caller', 1, reply, sentAt)
          }
          if (step.waitUs > 0) await new Promise(resolve => setTimeout(resolve, step.waitUs / 1000))
        }
      },
    ), { numRuns: 40, seed: 11 })
    // the property is about refusals: the runs must have made many
    expect(localRefusals).toBeGreaterThan(20)
    expect(storeCalls).toBeGreaterThan(100)
  }, 60_000)

  it('answers refusals locally until they no longer hold, and forgets a caller on reset', () => {
    const store = new MemoryStore({ clock: localClockUs })
    const cache = new DenyCache()
    const bucket = toBucket(1, 60_000, 1, 1)
    const inc = [incrementUs(1, bucket.intervalUs)]
    store.decide(['k'], [bucket.capacityUs], inc, true)
    const refused = store.decide(['k'], [bucket.capacityUs], inc, true)
    cache.remember('caller', 7, refused, localClockUs())
    expect(cache.check('caller', 7, [bucket.capacityUs], inc)?.allowed).toBe(false)
    expect(cache.check('caller', 8, [bucket.capacityUs], inc)).toBeUndefined() // another policy set
    expect(cache.hits).toBe(1)
    cache.forget('caller')
    expect(cache.check('caller', 7, [bucket.capacityUs], inc)).toBeUndefined()
  })

  it('stays bounded in callers, and in policy sets per caller', () => {
    const cache = new DenyCache(100)
    const reply = { allowed: false, nowUs: localClockUs(), tatsUs: [localClockUs() + 1e9] }
    for (let i = 0; i < 1000; i++) cache.remember(`c${i}`, 1, reply, localClockUs())
    expect(cache.size).toBe(100)
    const one = new DenyCache()
    for (let set = 0; set < 1000; set++) one.remember('dynamic-scopes', set, reply, localClockUs())
    expect(one.entries).toBe(16)
  })
})

describe.runIf(hasRedis)('the deny cache in front of Redis', () => {
  it('answers a refused caller\'s retries without a round trip, until its retry time', async () => {
    const client = redisClient()
    const app = await appWith({ name: 'redis', options: () => ({ store: { redis: client }, prefix: randomPrefix() }) })
    app.get('/p', { config: { rateLimit: { limits: [{ max: 10, per: '1s', burst: 2 }] } } }, ok)
    await app.ready()
    const named = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    const original = named.fastifyGcraDecideV3!.bind(client)
    let calls = 0
    named.fastifyGcraDecideV3 = (...args: unknown[]) => { calls++; return original(...args) }

    expect(await statuses(app, 3, '/p')).toEqual([200, 200, 429])
    expect(calls).toBe(3)
    const flood = await statuses(app, 50, '/p')
    // refused locally: the store saw none of them (unless 100 ms passed and a unit arrived)
    expect(flood.filter(s => s === 429).length).toBeGreaterThan(0)
    expect(calls).toBeLessThanOrEqual(3 + flood.filter(s => s === 200).length + 1)
    expect(app.rateLimiter.stats().denyCacheHits).toBeGreaterThanOrEqual(flood.filter(s => s === 429).length - 1)
    const refused = await app.inject('/p')
    expect(refused.headers['retry-after']).toBe('1')
    // the refused caller comes back after its wait and is admitted by the store
    await new Promise(resolve => setTimeout(resolve, 120))
    expect((await app.inject('/p')).statusCode).toBe(200)
  })

  it('is forgotten on reset', async () => {
    const client = redisClient()
    const app = await appWith({ name: 'redis', options: () => ({ store: { redis: client }, prefix: randomPrefix() }) })
    app.get('/p', { config: { rateLimit: { limits: ['1/hour'] } } }, ok)
    await app.ready()
    expect(await statuses(app, 2, '/p')).toEqual([200, 429])
    await app.rateLimiter.reset('127.0.0.1')
    expect(await statuses(app, 1, '/p')).toEqual([200])
  })
})

describe('the deny cache and free requests', () => {
  it('keeps a caller\'s remembered refusal when a free request (cost 0) of that caller comes in', async () => {
    const { createEngine } = await import('../../lib/engine.js')
    const { normaliseOptions, normaliseLimits } = await import('../../lib/options/normalise.js')
    let calls = 0
    // a bucket that stays empty: every charge refused, a free request admitted
    const decide = async (_keys: readonly string[], caps: readonly number[], incs: readonly number[]): Promise<StoreReply> => {
      calls++
      const nowUs = localClockUs() + 1_000_000
      return { allowed: incs[0] === 0, nowUs, tatsUs: [nowUs + caps[0]!] }
    }
    const store = {
      remote: true,
      decide,
      decideThen: (keys: readonly string[], caps: readonly number[], incs: readonly number[], _charge: boolean, _slack: number, resolve: (r: StoreReply) => void, reject: (e: unknown) => void) => { decide(keys, caps, incs).then(resolve, reject) },
      shardOf: () => '',
      onReconnect: () => {},
    } as never
    const log = { info () {}, error () {}, warn () {}, debug () {} } as never
    const { planner, decider } = createEngine(normaliseOptions({ store: { redis: 'redis://127.0.0.1:1' } }), store, log)
    decider.denyCache!.active = true
    const plan = planner.route({ label: 't', scopeId: 'scope:t', limits: normaliseLimits(['10/hour'], 'l'), withGlobal: false, where: 't', onStoreError: 'allow' })
    const ask = (incs: number[]) => decider.decide('caller', plan.base, incs, { charge: incs[0] !== 0, onStoreError: 'allow' })
    expect((await ask(plan.base.unitIncrements as number[])).reply?.allowed).toBe(false)
    expect(calls).toBe(1)
    expect((await ask([0])).reply?.allowed).toBe(true)
    expect(calls).toBe(2)
    // still refused locally, with no store call
    expect((await ask(plan.base.unitIncrements as number[])).reply?.allowed).toBe(false)
    expect(calls).toBe(2)
  })
})
