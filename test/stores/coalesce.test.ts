/**
 * Coalesced decisions: many requests' decisions in one script call, each decided exactly
 * as alone, in the order asked — against the reference model, step by step.
 */
import fc from 'fast-check'
import type { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { FST_GCRA_STORE_REPLY } from '../../lib/index.js'
import { incrementUs, toBucket } from '../../lib/gcra/math.js'
import { GCRA_LUA_FIXED_CLOCK } from '../../lib/gcra/lua.js'
import { Coalescer, encode, MAX_DECISIONS, MAX_KEYS, type CoalescerOptions, type Waiting } from '../../lib/stores/coalesce.js'
import type { StoreReply } from '../../lib/stores/contract.js'
import { RedisStore } from '../../lib/stores/redis.js'
import { EPOCH_US } from '../helpers/cases.js'
import { GcraModel, ratio, type ModelLimit } from '../helpers/model.js'
import { hasRedis, randomPrefix, redisClient } from '../helpers/redis.js'

const toNumber = (m: ModelLimit['multiplier']): number => (m === undefined ? 1 : Number(m[0]) / Number(m[1]))

/** The store's inputs for a request of `cost` over `limits`; undefined when it can never fit (a 413, never sent). */
function inputs (limits: readonly ModelLimit[], cost: number): { caps: number[], incs: number[] } | undefined {
  const buckets = limits.map(l => toBucket(l.max, l.perMs, l.burst, toNumber(l.multiplier)))
  const incs = buckets.map(b => incrementUs(cost, b.intervalUs))
  if (incs.some((inc, i) => inc > buckets[i]!.capacityUs)) return undefined
  return { caps: buckets.map(b => b.capacityUs), incs }
}

/** A decision asked of a coalescer; resolves with its reply. */
function ask (coalescer: Coalescer, node: string, keys: string[], caps: number[], incs: number[], charge = true): Promise<StoreReply> {
  return new Promise((resolve, reject) => coalescer.add(node, { keys, capacitiesUs: caps, incrementsUs: incs, charge, resolve, reject }))
}

const limitArb: fc.Arbitrary<ModelLimit> = fc.record({
  max: fc.integer({ min: 1, max: 12 }),
  perMs: fc.constantFrom(100, 1000, 60_000),
  burst: fc.integer({ min: 1, max: 15 }),
  multiplier: fc.constantFrom(1, 5, 2.5).map(m => ratio(m)),
})

interface Asked { who: number, route: number, cost: number, charge: boolean }

const tickArb = fc.record({
  dtUs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 300_000 }), fc.integer({ min: 0, max: 3_000_000 })),
  // many callers in one tick, the same caller several times among them
  asked: fc.array(fc.record({
    who: fc.integer({ min: 0, max: 3 }),
    route: fc.integer({ min: 0, max: 1 }),
    cost: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constantFrom(0.5, 2.25, 30)),
    // mostly charges, sometimes a check (the early check of a body-cost route)
    charge: fc.constantFrom(true, true, true, false),
  }), { minLength: 1, maxLength: 14 }),
})

describe.runIf(hasRedis)('coalesced calls on Redis against the model', () => {
  it('decide every request of a call exactly as alone, in order: stacked limits, a global limit shared by two routes, costs, checks', async () => {
    const redis = redisClient()
    await fc.assert(fc.asyncProperty(
      fc.array(limitArb, { minLength: 2, maxLength: 2 }), limitArb, fc.array(tickArb, { minLength: 1, maxLength: 12 }),
      async (routeLimits, globalLimit, ticks) => {
        let now = EPOCH_US
        let calls = 0
        const coalescer = new Coalescer(async (_node, keys, argv) => {
          calls++
          // the clock is virtual, TTLs are real: the call's keys are made persistent in the
          // same transaction, so none can expire before the next tick (a few ms of real time)
          const tx = (redis as Redis).multi().eval(GCRA_LUA_FIXED_CLOCK, keys.length, ...keys, ...argv, now)
          for (const key of keys) tx.persist(key)
          const [[error, reply]] = (await tx.exec())! as Array<[Error | null, unknown]> as [[Error | null, unknown]]
          if (error !== null) throw error
          return reply
        })
        const model = new GcraModel()
        const prefix = randomPrefix()
        for (const tick of ticks) {
          now += tick.dtUs
          const before = calls
          const sent: Array<{ a: Asked, keys: string[], limits: ModelLimit[], reply: Promise<StoreReply> }> = []
          for (const a of tick.asked as Asked[]) {
            // a route's own limit and the caller's global limit, as a limited route charges them
            const keys = [`${prefix}:{id${a.who}}:route${a.route}`, `${prefix}:{id${a.who}}:global`]
            const limits = [routeLimits[a.route]!, globalLimit]
            const given = inputs(limits, a.cost)
            if (given === undefined) continue
            sent.push({ a, keys, limits, reply: ask(coalescer, '', keys, given.caps, given.incs, a.charge) })
          }
          const replies = await Promise.all(sent.map(s => s.reply))
          expect(calls - before).toBe(sent.length === 0 ? 0 : 1)
          sent.forEach((s, i) => {
            const want = model.request(s.keys, s.limits, s.a.cost, now, s.a.charge)
            expect({ allowed: replies[i]!.allowed, nowUs: replies[i]!.nowUs, tatsUs: replies[i]!.tatsUs })
              .toEqual({ allowed: want.allowed, nowUs: now, tatsUs: want.tatsUs })
          })
        }
      },
    ), { numRuns: 50, seed: 20261203 })
  }, 60_000)

  it('send the decisions of one turn as one call, on Redis\'s clock, exactly as the model decides them in that order', async () => {
    const redis = redisClient()
    const store = new RedisStore(redis, false)
    let calls = 0
    const client = redis as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>
    const original = client.fastifyGcraDecideV3!
    client.fastifyGcraDecideV3 = function (...args: unknown[]) { calls++; return original.apply(this, args) }
    const limits: ModelLimit[] = [{ max: 3, perMs: 1000, burst: 3 }]
    const { caps, incs } = inputs(limits, 1)!
    const prefix = randomPrefix()
    const keysOf = (who: number): string[] => [`${prefix}:{c${who}}:p`]
    const order = Array.from({ length: 40 }, (_, i) => i % 5)
    const replies = await Promise.all(order.map(who => store.decide(keysOf(who), caps, incs, true)))
    expect(calls).toBe(1)
    const nowUs = replies[0]!.nowUs
    const model = new GcraModel()
    replies.forEach((reply, i) => {
      expect(reply.nowUs).toBe(nowUs)
      const want = model.request(keysOf(order[i]!), limits, 1, nowUs)
      expect([reply.allowed, reply.tatsUs]).toEqual([want.allowed, want.tatsUs])
    })
    // five callers, three admitted each, whatever their order in the call
    expect(replies.filter(r => r.allowed)).toHaveLength(15)
  })
})

describe('the bounds of a call', () => {
  const recorder = () => {
    const calls: number[] = []
    const coalescer = new Coalescer(async (_node, _keys, argv) => {
      // m decisions, s lists (n, slack, then n caps and increments), then per decision: list, mode
      const m = argv[0] as number
      calls.push(m)
      const sizes: number[] = []
      let a = 2
      for (let j = 0; j < (argv[1] as number); j++) {
        sizes.push(argv[a] as number)
        a += 2 + 2 * (argv[a] as number)
      }
      const reply: number[] = [1]
      for (let d = 0; d < m; d++, a += 2) reply.push(1, ...Array<number>(sizes[(argv[a] as number) - 1]!).fill(2))
      return reply
    })
    return { calls, coalescer }
  }
  const keys = (n: number, i: number) => Array.from({ length: n }, (_, k) => `p:{c${i}}:${k}`)
  /** A coalescer whose calls never answer, and how many it sent. */
  const hanging = (options: CoalescerOptions) => {
    const calls = { sent: 0 }
    const coalescer = new Coalescer(() => {
      calls.sent++
      return new Promise(() => {})
    }, options)
    return { calls, coalescer }
  }
  /** A coalescer whose calls admit every decision (TAT 2), and the decisions of each call sent. */
  const admitting = (options: CoalescerOptions) => {
    const sent: number[] = []
    const coalescer = new Coalescer(async (_node, _keys, argv) => {
      sent.push(argv[0] as number)
      return [1, ...Array.from({ length: argv[0] as number }, () => [1, 2]).flat()]
    }, options)
    return { sent, coalescer }
  }

  it(`split a turn's decisions at ${MAX_DECISIONS} per call, and one node's from another's`, async () => {
    const { calls, coalescer } = recorder()
    const asked = Array.from({ length: 600 }, (_, i) => ask(coalescer, i % 2 === 0 ? 'a' : 'b', keys(1, i), [5], [1]))
    await Promise.all(asked)
    // one call out per node at a time: each node's rest goes when its first call is back
    expect(calls).toEqual([256, 256, 44, 44])
  })

  it(`split at ${MAX_KEYS} keys per call`, async () => {
    const { calls, coalescer } = recorder()
    await Promise.all(Array.from({ length: 300 }, (_, i) => ask(coalescer, '', keys(5, i), [5, 5, 5, 5, 5], [1, 1, 1, 1, 1])))
    expect(calls).toEqual([204, 96])
  })

  it('send a policy set\'s capacities and increments once per call, however many decisions use them', () => {
    const caps = [5, 7]
    const fixed = [1, 2]
    const other = [3, 4]
    const d = (i: number, incs: number[], charge = true, slackUs = 0): Waiting => ({ keys: keys(2, i), capacitiesUs: caps, incrementsUs: incs, charge, slackUs, resolve: () => {}, reject: () => {} })
    expect(encode([d(0, fixed), d(1, fixed, false), d(2, other), d(3, fixed)])).toEqual({
      keys: [...keys(2, 0), ...keys(2, 1), ...keys(2, 2), ...keys(2, 3)],
      argv: [4, 2, 2, 0, 5, 1, 7, 2, 2, 0, 5, 3, 7, 4, 1, '1', 1, '0', 2, '1', 1, '1'],
    })
    // the same set and cost with another slack (a route with another delay) is a list of its own
    expect(encode([d(0, fixed), d(1, fixed, true, 9)]).argv).toEqual([2, 2, 2, 0, 5, 1, 7, 2, 2, 9, 5, 1, 7, 2, 1, '1', 2, '1'])
  })

  it('gather the decisions asked while a call is out, and send them together when it is back', async () => {
    const sizes: number[] = []
    const answers: Array<() => void> = []
    const coalescer = new Coalescer((_node, _keys, argv) => {
      const m = argv[0] as number
      sizes.push(m)
      return new Promise(resolve => answers.push(() => resolve([1, ...Array.from({ length: m }, () => [1, 2]).flat()])))
    })
    const first = ask(coalescer, '', keys(1, 0), [5], [1])
    await new Promise(resolve => setImmediate(resolve))
    expect(sizes).toEqual([1])
    // three more turns while the first call is out: nothing is sent
    const later: Array<Promise<StoreReply>> = []
    for (let turn = 1; turn <= 3; turn++) {
      later.push(ask(coalescer, '', keys(1, turn), [5], [1]), ask(coalescer, '', keys(1, 10 + turn), [5], [1]))
      await new Promise(resolve => setImmediate(resolve))
    }
    expect(sizes).toEqual([1])
    answers[0]!()
    await first
    expect(sizes).toEqual([1, 6])
    answers[1]!()
    expect((await Promise.all(later)).every(r => r.allowed)).toBe(true)
  })

  it('free a node\'s turn after releaseMs when a call hangs, so later decisions still go out', async () => {
    let sent = 0
    const coalescer = new Coalescer(async (_node, _keys, argv) => {
      sent++
      if (sent === 1) return await new Promise(() => {})
      return [1, ...Array.from({ length: argv[0] as number }, () => [1, 2]).flat()]
    }, { releaseMs: 30, timeoutMs: 1000 })
    const hung = ask(coalescer, '', keys(1, 0), [5], [1])
    await new Promise(resolve => setImmediate(resolve))
    const started = performance.now()
    const reply = await ask(coalescer, '', keys(1, 1), [5], [1])
    expect(reply.allowed).toBe(true)
    expect(sent).toBe(2)
    expect(performance.now() - started).toBeGreaterThanOrEqual(25)
    await expect(hung).rejects.toMatchObject({ code: 'FST_GCRA_STORE_TIMEOUT' })
  })

  it('fail the decisions of a call still out at the store timeout, counted from when each was asked; a reply after it answers nothing', async () => {
    const late: Array<() => void> = []
    const coalescer = new Coalescer((_node, _keys, argv) => new Promise(resolve => late.push(() => resolve([1, ...Array.from({ length: argv[0] as number }, () => [1, 2]).flat()]))), { timeoutMs: 60 })
    const answers: string[] = []
    const asked = performance.now()
    const decisions = [0, 1, 2].map(i => ({
      keys: keys(1, i), capacitiesUs: [5], incrementsUs: [1], charge: true,
      resolve: () => answers.push(`reply ${i}`),
      reject: (error: unknown) => answers.push(`${(error as { code: string }).code} ${i} after ${Math.round(performance.now() - asked)} ms`),
    }))
    for (const d of decisions) coalescer.add('', d)
    await new Promise(resolve => setTimeout(resolve, 150))
    // one call carried the three; each failed at its deadline, not before
    expect(late).toHaveLength(1)
    expect(answers).toHaveLength(3)
    for (const [i, text] of answers.entries()) {
      const [code, who, , ms] = text.split(' ')
      expect([code, who]).toEqual(['FST_GCRA_STORE_TIMEOUT', String(i)])
      expect(Number(ms)).toBeGreaterThanOrEqual(59)
      expect(Number(ms)).toBeLessThan(140)
    }
    late[0]!()
    await new Promise(resolve => setImmediate(resolve))
    expect(answers).toHaveLength(3)
  })

  it('fail each decision of a hung call at its own deadline, not at the deadline of the oldest one it carries', async () => {
    const { coalescer, calls } = hanging({ releaseMs: 50, timeoutMs: 100 })
    const waited: number[] = []
    const timed = (i: number): Promise<void> => {
      const asked = performance.now()
      return ask(coalescer, '', keys(1, i), [5], [1]).then(
        () => { throw new Error('a hung call answered') },
        (error: unknown) => {
          expect(error).toMatchObject({ code: 'FST_GCRA_STORE_TIMEOUT' })
          waited[i] = performance.now() - asked
        })
    }
    const all = [timed(0)]
    // asked while the first call is out: they leave together when it frees its turn (50 ms)
    await new Promise(resolve => setTimeout(resolve, 10))
    all.push(timed(1))
    await new Promise(resolve => setTimeout(resolve, 25))
    all.push(timed(2))
    await Promise.all(all)
    expect(calls.sent).toBe(2)
    for (const ms of waited) {
      expect(ms).toBeGreaterThanOrEqual(99)
      expect(ms).toBeLessThan(140)
    }
  })

  it('fail at its deadline a decision that waits for a turn behind a hung call, and never send it', async () => {
    const { coalescer, calls } = hanging({ releaseMs: 80, timeoutMs: 60 })
    const first = ask(coalescer, '', keys(1, 0), [5], [1]).catch((error: unknown) => error)
    await new Promise(resolve => setImmediate(resolve))
    const asked = performance.now()
    const waiting = ask(coalescer, '', keys(1, 1), [5], [1])
    await expect(waiting).rejects.toMatchObject({ code: 'FST_GCRA_STORE_TIMEOUT' })
    const waited = performance.now() - asked
    expect(waited).toBeGreaterThanOrEqual(59)
    expect(waited).toBeLessThan(140)
    expect(await first).toMatchObject({ code: 'FST_GCRA_STORE_TIMEOUT' })
    // the turn comes back at 80 ms, after its deadline: it is not sent then
    await new Promise(resolve => setTimeout(resolve, 60))
    expect(calls.sent).toBe(1)
  })

  it('drop a decision that waited the store timeout unsent (its request was answered without the store), and send the others', async () => {
    const { sent, coalescer } = admitting({ timeoutMs: 30 })
    const stale = ask(coalescer, '', keys(1, 0), [5], [1])
    // the event loop is held past the timeout before the turn ends
    const until = performance.now() + 40
    while (performance.now() < until) { /* busy */ }
    const fresh = ask(coalescer, '', keys(1, 1), [5], [1])
    await expect(stale).rejects.toMatchObject({ code: 'FST_GCRA_STORE_TIMEOUT' })
    expect((await fresh).allowed).toBe(true)
    expect(sent).toEqual([1])
  })

  it('run a failed decision\'s callback outside its own loops: a callback that flushes the node (a reset) sends each fresh decision once', async () => {
    const { sent, coalescer } = admitting({ timeoutMs: 30 })
    const outcomes: string[] = []
    const decision = (i: number, onReject?: () => void): Waiting => ({
      keys: keys(1, i), capacitiesUs: [5], incrementsUs: [1], charge: true,
      resolve: () => outcomes.push(`${i} admitted`),
      reject: (error: unknown) => {
        outcomes.push(`${i} ${(error as { code?: string }).code}`)
        onReject?.()
      },
    })
    // a reset from the refused request's answer flushes the node at once
    coalescer.add('', decision(0, () => coalescer.flush('')))
    coalescer.add('', decision(1))
    const until = performance.now() + 40
    while (performance.now() < until) { /* the event loop is held past the timeout */ }
    coalescer.add('', decision(2))
    coalescer.add('', decision(3))
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(outcomes.sort()).toEqual(['0 FST_GCRA_STORE_TIMEOUT', '1 FST_GCRA_STORE_TIMEOUT', '2 admitted', '3 admitted'])
    // the two fresh decisions went out once, together
    expect(sent).toEqual([2])
  })

  it('fail every decision of a call that fails, and never send it again', async () => {
    let sent = 0
    const boom = new Error('connection lost')
    const coalescer = new Coalescer(async () => { sent++; throw boom })
    const results = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => ask(coalescer, '', keys(1, i), [5], [1])))
    expect(sent).toBe(1)
    expect(results.map(r => r.status === 'rejected' ? r.reason : r)).toEqual(Array(5).fill(boom))
  })

  it('fail every decision of a call whose reply cannot be read', async () => {
    const coalescer = new Coalescer(async () => [1, 1, 5])
    const results = await Promise.allSettled([ask(coalescer, '', keys(1, 0), [5], [1]), ask(coalescer, '', keys(1, 1), [5], [1])])
    for (const r of results) {
      expect(r.status).toBe('rejected')
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(FST_GCRA_STORE_REPLY)
    }
  })

  it('fail the decisions of a call that throws as it is sent', async () => {
    const coalescer = new Coalescer(() => { throw new Error('not connected') })
    await expect(ask(coalescer, '', keys(1, 0), [5], [1])).rejects.toThrow('not connected')
  })
})
