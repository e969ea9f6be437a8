/**
 * `delay` across app instances sharing one store: the holds are the store's decision (the
 * TATs it wrote, on its clock), so two instances on one Redis, or on a Redis Cluster,
 * shape one caller's burst into one sequence of slots. Real time: T = D = 200 ms and a
 * delay of 1 s, so holds are multiples of 200 ms and jitter of tens of ms does not matter.
 */
import type { FastifyInstance } from 'fastify'
import type { Cluster } from 'ioredis'
import { describe, expect, it } from 'vitest'
import gcra, { type FastifyGcraOptions } from '../../lib/index.js'
import { hashIdentity } from '../../lib/identity/hash.js'
import { slotOf } from '../../lib/stores/redis.js'
import { newApp } from '../helpers/app.js'
import { burst } from '../helpers/delay.js'
import { hasRedis, randomPrefix, redisClient } from '../helpers/redis.js'
import { clusterFixture } from '../helpers/cluster.js'

/** T = per / max = 200 ms, D = burst · T = 200 ms. */
const LIMIT = { max: 5, per: '1s', burst: 1 }
const SLOT_MS = 200
/**
 * A hold is k·T minus the time from the caller's first decision to its own, on the store's
 * clock; ten decisions sent at once are made well within this (a few ms, tens under load),
 * and it stays under T so that neighbouring slots can never be mistaken for each other.
 */
const TOLERANCE_MS = 150
/** Clock granularity between the client's timer and the store's clock (ms, rounding). */
const SLACK_MS = 5

async function shapedApp (options: Partial<FastifyGcraOptions>): Promise<FastifyInstance> {
  const app = newApp()
  // several identities from a header: the test's own callers (never do this with a client header in production)
  await app.register(gcra, { ...options, global: [], key: req => String(req.headers['x-caller']) })
  app.get('/gen', { config: { rateLimit: { limits: [LIMIT], delay: '1s', scope: 'shaped' } } }, async req => req.rateLimit)
  await app.ready()
  return app
}

/**
 * Ten requests of `caller` at once, alternating between `apps`: GCRA with delay admits
 * exactly 6 (new − now ≤ D + delay = 1200 ms: slots 0..5), 1 at once and 5 held in slots
 * 200 ms apart, and refuses 4 at once without charging them.
 */
async function expectShaped (apps: FastifyInstance[], caller: string): Promise<void> {
  const start = performance.now()
  // every decision of the burst has been made once its 4th refusal is back
  let decidedBy = Infinity
  const answers = await burst(apps, '/gen', caller, 10, 4, () => { decidedBy = performance.now() })
  const admitted = answers.filter(a => a.status === 200)
  const refused = answers.filter(a => a.status === 429)
  expect(admitted).toHaveLength(6)
  expect(refused).toHaveLength(4)
  // whichever app served them: 6 admissions out of 5 requests per app come from both
  if (apps.length > 1) expect(new Set(admitted.map(a => a.app)).size).toBe(apps.length)
  // a refusal would wait 1400 − 1200 ms (minus the decisions' spread) to be held: Retry-After 1
  for (const r of refused) expect(r.retryAfter).toBe('1')

  admitted.sort((a, b) => a.info!.delayedMs - b.info!.delayedMs)
  const holds = admitted.map(a => a.info!.delayedMs)
  expect(holds[0]).toBe(0)
  holds.forEach((hold, k) => {
    expect(hold).toBeLessThanOrEqual(k * SLOT_MS)
    expect(hold).toBeGreaterThanOrEqual(k * SLOT_MS - TOLERANCE_MS)
  })
  for (const a of admitted) expect(a.info).toMatchObject({ allowed: true, cost: 1 })
  // served in the order of their slots; the refusals were answered at once, before the last slot
  for (let k = 1; k < admitted.length; k++) expect(admitted[k]!.doneAt).toBeGreaterThan(admitted[k - 1]!.doneAt)
  expect(Math.max(...refused.map(r => r.doneAt))).toBeLessThan(admitted[5]!.doneAt)

  // the store charged exactly 6, the refusals nothing: the last held request's slot ends at
  // its now + hold = t0 + 5·T, and the TAT stands one T later. A next request is held for
  // TAT − its now (it fits: TAT + T − now ≤ D + delay); its now is later than the last
  // decision's by what the client saw, give or take the decisions' spread
  const nextAt = performance.now()
  const [next] = await burst([apps[apps.length - 1]!], '/gen', caller, 1)
  expect(next!.status).toBe(200)
  const tatAhead = holds[5]! + SLOT_MS
  const hold = next!.info!.delayedMs
  expect(hold).toBeLessThanOrEqual(tatAhead - (nextAt - decidedBy) + SLACK_MS)
  expect(hold).toBeGreaterThanOrEqual(tatAhead - (nextAt - start) - TOLERANCE_MS)
  expect(hold).toBeGreaterThan(0)
}

describe('delay on one app in memory', () => {
  it('shapes one caller\'s burst into one sequence of slots', async () => {
    await expectShaped([await shapedApp({ store: 'memory' })], 'caller-a')
  }, 20_000)
})

describe.runIf(hasRedis)('delay with two app instances on one Redis', () => {
  it('shapes one caller\'s burst into one sequence of slots, whichever instance serves each request', async () => {
    const prefix = randomPrefix()
    const apps = [await shapedApp({ store: { redis: redisClient() }, prefix }), await shapedApp({ store: { redis: redisClient() }, prefix })]
    await expectShaped(apps, 'caller-a')
  }, 20_000)
})

describe.runIf(hasRedis)('delay with two app instances on a 3-master Redis Cluster', () => {
  const fixture = clusterFixture(3)

  const connect = async (): Promise<Cluster> => {
    const client = fixture.connect()
    if (client.status !== 'ready') await new Promise(resolve => client.once('ready', resolve))
    return client
  }

  it('shapes each caller\'s burst on its own master, callers on every master at once', async () => {
    const probe = await connect()
    // one caller per master: the hash tag of a caller's keys is its hashed identity
    const byMaster = new Map<string, string>()
    for (let i = 0; byMaster.size < 3 && i < 200; i++) {
      const master = probe.slots[slotOf(hashIdentity(`caller-${i}`))]![0]!
      if (!byMaster.has(master)) byMaster.set(master, `caller-${i}`)
    }
    const callers = [...byMaster.values()]
    expect(callers).toHaveLength(3)

    const prefix = randomPrefix()
    const apps = [await shapedApp({ store: { redis: await connect() }, prefix }), await shapedApp({ store: { redis: await connect() }, prefix })]
    await Promise.all(callers.map(caller => expectShaped(apps, caller)))

    // each master holds the bucket of exactly one caller
    const masters = probe.nodes('master')
    expect(masters).toHaveLength(3)
    const perNode = await Promise.all(masters.map(node => node.keys(`${prefix}:*`)))
    expect(perNode.map(keys => keys.length)).toEqual([1, 1, 1])
    expect(perNode.flat().map(k => k.split('}')[0]!.split('{')[1]).sort()).toEqual(callers.map(c => hashIdentity(c)).sort())
  }, 30_000)
})
