import fc from 'fast-check'
import type { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { encode } from '../../lib/stores/coalesce.js'
import { GCRA_LUA, GCRA_LUA_FIXED_CLOCK } from '../../lib/gcra/lua.js'
import { RedisStore } from '../../lib/stores/redis.js'
import type { BucketStore, StoreReply } from '../../lib/stores/contract.js'
import { EPOCH_US, keysFor, randomCase, REFERENCE_LIMIT, REFERENCE_STEPS } from '../helpers/cases.js'
import { GcraModel, type ModelLimit } from '../helpers/model.js'
import { hasRedis, randomPrefix, redisClient } from '../helpers/redis.js'
import { comparable, libStep } from '../helpers/subjects.js'

/**
 * The production script's body with the clock read from ARGV, as a store of one decision per
 * call. `persist`: the call's keys lose their TTL in the same transaction (the clock is
 * virtual, TTLs are real: a TTL of a few ms could end before the next step on a busy machine).
 */
function fixedClockStore (redis: Redis, clock: () => number, persist = false): Pick<BucketStore, 'decide'> {
  return {
    async decide (keys, caps, incs, charge): Promise<StoreReply> {
      const { argv } = encode([{ keys, capacitiesUs: caps, incrementsUs: incs, charge, resolve: () => {}, reject: () => {} }])
      const tx = redis.multi().eval(GCRA_LUA_FIXED_CLOCK, keys.length, ...keys, ...argv, clock())
      if (persist) for (const key of keys) tx.persist(key)
      const [[error, result]] = (await tx.exec())! as Array<[Error | null, unknown]> as [[Error | null, unknown]]
      if (error !== null) throw error
      const reply = result as number[]
      return { allowed: reply[1] === 1, nowUs: reply[0]!, tatsUs: reply.slice(2) }
    },
  }
}

describe('the Lua script', () => {
  it('names every KEYS and ARGV entry and its unit in its header', () => {
    for (const needle of ['KEYS', 'ARGV[1]', 'ARGV[2]', 'bucket lists', 'mode', 'cap, inc', 'microseconds', 'TIME', 'MGET', 'one call per master']) {
      expect(GCRA_LUA).toContain(needle)
    }
    // the production script never reads a clock from its arguments
    expect(GCRA_LUA).not.toContain('ARGV[#ARGV]')
  })
})

describe.runIf(hasRedis)('the Lua script on Redis against the model', () => {
  it('matches the reference cases exactly, with the TTLs of the contract', async () => {
    const redis = redisClient()
    let now = EPOCH_US
    const store = fixedClockStore(redis, () => now)
    const model = new GcraModel()
    const key = `${randomPrefix()}:{a}:0`
    for (const step of REFERENCE_STEPS) {
      now = EPOCH_US + step.tMs * 1000
      const got = await libStep(store, [key], [REFERENCE_LIMIT], step.cost)
      const want = model.request([key], [REFERENCE_LIMIT], step.cost, now)
      expect(comparable(got), `t=${step.tMs} cost ${step.cost}`).toEqual(comparable(want))
      if (step.tooLarge) continue
      expect(got.retryAfterUs).toBe((step.retryAfterMs ?? 0) * 1000)
      // the stored TAT is the integer the model holds; its TTL the time to a full bucket
      expect(await redis.get(key)).toBe(String(model.tats.get(key)))
      if (step.allowed === true) {
        const pttl = await redis.pttl(key)
        expect(pttl).toBeLessThanOrEqual(want.ttlMs[0]!)
        expect(pttl).toBeGreaterThan(want.ttlMs[0]! - 1000)
      }
      // TTLs count real time, this clock is virtual: keep the key until the next step
      await redis.persist(key)
    }
  })

  it('matches the model on random sequences', async () => {
    const redis = redisClient()
    await fc.assert(fc.asyncProperty(randomCase, async ({ limits, steps }) => {
      let now = EPOCH_US
      const store = fixedClockStore(redis, () => now, true)
      const model = new GcraModel()
      const prefix = randomPrefix()
      for (const step of steps) {
        now += step.dtUs
        const keys = keysFor(prefix, step.who, limits.length)
        const got = await libStep(store, keys, limits, step.cost)
        expect(comparable(got)).toEqual(comparable(model.request(keys, limits, step.cost, now)))
        // TTLs count real time, this clock is virtual: a loaded machine must not expire a key
        // between two steps (expiry only ever drops a TAT already past on the real clock)
        await Promise.all(keys.map(k => redis.persist(k)))
      }
    }), { numRuns: 60, seed: 20261122 })
  })

  it('on the Redis clock, matches the model fed with the clock the script read', async () => {
    const redis = redisClient()
    const store = new RedisStore(redis, false)
    const limits: ModelLimit[] = [{ max: 20, perMs: 1000, burst: 5 }, { max: 3, perMs: 200, burst: 4 }]
    const model = new GcraModel()
    const keys = keysFor(randomPrefix(), 0, limits.length)
    let lastNow = 0
    let refused = 0
    for (let i = 0; i < 60; i++) {
      const cost = [1, 1, 2, 0.5][i % 4]!
      const got = await libStep(store, keys, limits, cost)
      expect(got.nowUs).toBeGreaterThanOrEqual(lastNow)
      lastNow = got.nowUs
      expect(comparable(got)).toEqual(comparable(model.request(keys, limits, cost, got.nowUs)))
      if (!got.allowed) refused++
      await new Promise(resolve => setTimeout(resolve, i % 3 === 0 ? 25 : 0))
    }
    // the sequence is meant to meet both outcomes
    expect(refused).toBeGreaterThan(0)
    expect(refused).toBeLessThan(60)
  })

  it('treats a stored value that is not a number as absent, and writes nothing on refusal', async () => {
    const redis = redisClient()
    const store = new RedisStore(redis, false)
    const key = `${randomPrefix()}:{a}:0`
    for (const junk of ['abc', 'nan', 'inf', '']) {
      await redis.set(key, junk)
      const r = await libStep(store, [key], [REFERENCE_LIMIT], 1)
      expect(r.allowed).toBe(true)
      expect(r.remaining).toEqual([4])
    }
    await redis.del(key)
    await libStep(store, [key], [REFERENCE_LIMIT], 5)
    const before = await redis.get(key)
    const ttlBefore = await redis.pttl(key)
    const refusedStep = await libStep(store, [key], [REFERENCE_LIMIT], 1)
    expect(refusedStep.allowed).toBe(false)
    expect(await redis.get(key)).toBe(before)
    expect(await redis.pttl(key)).toBeLessThanOrEqual(ttlBefore)
    // a check (no charge) writes nothing either, even when it would be admitted
    const other = `${randomPrefix()}:{a}:0`
    const check = await libStep(store, [other], [REFERENCE_LIMIT], 1, false)
    expect(check.allowed).toBe(true)
    expect(await redis.exists(other)).toBe(0)
  })
})
