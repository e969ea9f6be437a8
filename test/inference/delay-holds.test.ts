/**
 * The requests `delay` holds, on one instance: `maxDelayed` bounds them (a request with no
 * place left is decided without delay), the gauge counts them, and a held request whose
 * client goes away is never served and gives its charge (and its concurrency slot) back,
 * even when that refund cannot reach the store. Charges past a bucket's capacity D (what a
 * delay leaves) are read and settled as they stand. Real time: T = D = 1 s and a delay of
 * 3 s, so holds are whole seconds and timing jitter of tens of ms does not matter.
 */
import type { FastifyInstance } from 'fastify'
import http from 'node:http'
import { describe, expect, it } from 'vitest'
import type { FastifyGcraOptions } from '../../lib/index.js'
import { appWith, storeCases, type StoreCase } from '../helpers/app.js'
import { burst, eventually, metric, tick } from '../helpers/delay.js'
import { hasRedis, redisClient } from '../helpers/redis.js'

/** T = 1 s, D = 1 s: a charge moves the TAT by a second. */
const LIMIT = { max: 1, per: '1s', burst: 1 }
const SLOT_MS = 1000
/** How far a decision's now may lag the moment its request was sent (a few ms, tens under load). */
const TOLERANCE_MS = 150
/** Clock granularity between the client's timer and the store's clock (ms, rounding). */
const SLACK_MS = 5

async function shapedApp (store: StoreCase, options: Partial<FastifyGcraOptions> = {}, route: Record<string, unknown> = {}, routes?: (app: FastifyInstance) => void): Promise<FastifyInstance & { served: string[] }> {
  const app = Object.assign(await appWith(store, { global: [], metrics: true, key: req => String(req.headers['x-caller'] ?? req.ip), ...options }), { served: [] as string[] })
  app.get('/gen', { config: { rateLimit: { limits: [LIMIT], delay: '3s', scope: 'shaped', ...route } } }, async (req) => {
    app.served.push(String(req.headers['x-name'] ?? req.headers['x-caller']))
    return req.rateLimit
  })
  routes?.(app)
  await app.ready()
  return app
}

describe.each(storeCases)('maxDelayed ($name)', (store) => {
  /**
   * One request alone (admitted at once: it fits without delay and takes no place), then
   * five at once: none fits without delay (charged nothing); the first two take the two
   * places, are decided again with the delay and held 1 s and 2 s; the three others find
   * no place and stay refused, at once.
   */
  async function fiveAtOnce (app: FastifyInstance, onRefused?: () => void) {
    const [first] = await burst([app], '/gen', 'c', 1)
    expect(first!.status).toBe(200)
    expect(first!.info!.delayedMs).toBe(0)
    const start = performance.now()
    let decidedBy = Infinity
    const answers = await burst([app], '/gen', 'c', 5, 3, () => { decidedBy = performance.now(); onRefused?.() })
    return { start, decidedBy, answers }
  }

  it('holds at most maxDelayed requests; the others are refused at once and charged nothing; the gauge counts the held ones', async () => {
    const app = await shapedApp(store, { maxDelayed: 2 })
    // from the refusals on, until the first held request is served (1 s), the gauge comes to read 2
    let gauge: Promise<void> | undefined
    const { start, decidedBy, answers } = await fiveAtOnce(app, () => { gauge = eventually(async () => (await metric(app, 'fastify_gcra_delayed_requests')) === 2, 900) })
    const held = answers.filter(a => a.status === 200).sort((a, b) => a.info!.delayedMs - b.info!.delayedMs)
    const refused = answers.filter(a => a.status === 429)
    expect(held).toHaveLength(2)
    expect(refused).toHaveLength(3)
    held.forEach((a, i) => {
      expect(a.info!.delayedMs).toBeLessThanOrEqual((i + 1) * SLOT_MS)
      expect(a.info!.delayedMs).toBeGreaterThanOrEqual((i + 1) * SLOT_MS - TOLERANCE_MS)
    })
    // the refusals came back before either held request was served
    expect(Math.max(...refused.map(r => r.doneAt))).toBeLessThan(held[0]!.doneAt)
    await expect(gauge).resolves.toBeUndefined()
    await eventually(async () => (await metric(app, 'fastify_gcra_delayed_requests')) === 0)
    expect(await metric(app, 'fastify_gcra_delayed_requests')).toBe(0)
    expect(await metric(app, 'fastify_gcra_delay_seconds_count', { gone: 'false' })).toBe(2)
    const outcomes = { route: 'GET /gen', tier: 'none' }
    expect(await metric(app, 'fastify_gcra_requests_total', { ...outcomes, outcome: 'delayed' })).toBe(2)
    expect(await metric(app, 'fastify_gcra_requests_total', { ...outcomes, outcome: 'refused' })).toBe(3)
    expect(await metric(app, 'fastify_gcra_requests_total', { ...outcomes, outcome: 'admitted' })).toBe(1)

    // charged 3 in all: the last held slot ends at its now + hold, the TAT one T later; a
    // next request (places are free again) is held until then
    const nextAt = performance.now()
    const [next] = await burst([app], '/gen', 'c', 1)
    expect(next!.status).toBe(200)
    const tatAhead = held[1]!.info!.delayedMs + SLOT_MS
    expect(next!.info!.delayedMs).toBeLessThanOrEqual(tatAhead - (nextAt - decidedBy) + SLACK_MS)
    expect(next!.info!.delayedMs).toBeGreaterThanOrEqual(tatAhead - (nextAt - start) - TOLERANCE_MS)
  }, 20_000)

  it('holds maxDelayed requests of a burst of six at once: 1 at once, 2 held, 3 refused', async () => {
    const app = await shapedApp(store, { maxDelayed: 2 })
    const answers = await burst([app], '/gen', 'c', 6)
    // a decision takes a place while in flight, but one admitted at once gives it back:
    // two places for the two requests that are held, whoever asked first
    const holds = answers.filter(a => a.status === 200).map(a => a.info!.delayedMs > 0)
    expect(holds.filter(h => !h)).toHaveLength(1)
    expect(holds.filter(h => h)).toHaveLength(2)
    expect(answers.filter(a => a.status === 429)).toHaveLength(3)
  }, 20_000)

  it('tells a request refused for want of a place the wait to an admission without hold (Retry-After)', async () => {
    const app = await shapedApp(store, { maxDelayed: 2 })
    const { answers } = await fiveAtOnce(app)
    const refused = answers.filter(a => a.status === 429)
    expect(refused).toHaveLength(3)
    // a refusal for want of a place tells the wait to an admission without hold, as its
    // decision saw the bucket: in memory after the two held charges (TAT = t0 + 3 s: 3 s);
    // on Redis the five were decided together before the two were charged again with the
    // delay (TAT = t0 + 1 s: 1 s, when the first held request leaves its place)
    for (const r of refused) expect(r.retryAfter).toBe(store.name === 'memory' ? '3' : '1')
  }, 20_000)

  it('peek reads a bucket a delayed route charged past its capacity: retryAfterMs = TAT − now', async () => {
    const app = await shapedApp(store)
    const pending = burst([app], '/gen', 'c', 3)
    // three charges (at once, held 1 s, held 2 s): TAT = t0 + 3 s, read while two are held
    await eventually(async () => (await metric(app, 'fastify_gcra_delayed_requests')) === 2)
    const peek = await app.rateLimiter.peek('c', [LIMIT], { scope: 'shaped' })
    expect((await pending).map(a => a.status)).toEqual([200, 200, 200])
    expect(peek.allowed).toBe(false)
    expect(peek.retryAfterMs).toBeLessThanOrEqual(3 * SLOT_MS)
    expect(peek.retryAfterMs).toBeGreaterThanOrEqual(3 * SLOT_MS - TOLERANCE_MS)
  }, 20_000)
})

describe.each(storeCases)('a settle beside held requests ($name)', (store) => {
  it('keeps the held charges of a delayed route when a route of the same scope without delay settles', async () => {
    let open!: () => void
    const gate = new Promise<void>(resolve => { open = resolve })
    let entered = false
    const app = await shapedApp(store, {}, {}, (a) => {
      a.get('/settled', { config: { rateLimit: { limits: [LIMIT], scope: 'shaped' } } }, async (_req, reply) => {
        entered = true
        await gate
        await reply.rateLimit!.settle(0.5)
        return { ok: true }
      })
    })
    // t0: /settled charged 1 (TAT t0 + 1 s); two on /gen held 1 s and 2 s (TAT t0 + 3 s)
    const settled = app.inject({ url: '/settled', headers: { 'x-caller': 'c' } })
    await eventually(() => entered)
    const held = burst([app], '/gen', 'c', 2)
    await eventually(async () => (await metric(app, 'fastify_gcra_delayed_requests')) === 2)
    // the settle gives half a unit back: TAT t0 + 2.5 s, never less
    open()
    expect((await settled).statusCode).toBe(200)
    // three more at once, well within 500 ms of t0: the first fits (held until t0 + 2.5 s),
    // the next two would need new − now ≤ D + delay = 4 s, and find 4.5 s and 5.5 s
    const more = await burst([app], '/gen', 'c', 3)
    expect((await held).map(a => a.status)).toEqual([200, 200])
    expect(more.map(a => a.status).sort()).toEqual([200, 429, 429])
  }, 20_000)
})

interface Sent {
  response: Promise<{ status: number, body: Record<string, unknown> }>
  /** Local clock (Date.now, the memory store's and Redis' clock) when it was sent. */
  sentAt: number
  destroy: () => void
}

/** A GET over its own socket; bounded at 10 s. */
function send (url: string, name: string): Sent {
  const req = http.request(url, { agent: false, headers: { 'x-name': name } })
  req.setTimeout(10_000, () => req.destroy(new Error('no response in 10 s')))
  const response = new Promise<{ status: number, body: Record<string, unknown> }>((resolve, reject) => {
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  const sentAt = Date.now()
  req.end()
  return { response, sentAt, destroy: () => req.destroy() }
}

async function listening (app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}/gen`
}

describe.each(storeCases)('a held request whose client goes away ($name)', (store) => {
  /** A admitted at once; B held ~1 s and its socket destroyed once held; B never served. */
  async function leaveWhileHeld (app: FastifyInstance & { served: string[] }, url: string) {
    const a = send(url, 'A')
    const aDone = await a.response
    const aEnd = Date.now()
    expect(aDone.status).toBe(200)
    expect(aDone.body.delayedMs).toBe(0)
    const b = send(url, 'B')
    const bGone = b.response.then(() => 'answered', () => 'gone')
    await eventually(async () => (await metric(app, 'fastify_gcra_delayed_requests')) === 1)
    await tick(100)
    b.destroy()
    expect(await bGone).toBe('gone')
    await eventually(async () => (await metric(app, 'fastify_gcra_delay_seconds_count', { gone: 'true' })) === 1)
    expect(await metric(app, 'fastify_gcra_delayed_requests')).toBe(0)
    return { aStart: a.sentAt, aEnd }
  }

  /** C takes B's slot: held until A's TAT (t0 + 1 s), not t0 + 2 s; B's handler never ran. */
  async function expectSlotGivenBack (app: FastifyInstance & { served: string[] }, url: string, a: { aStart: number, aEnd: number }) {
    const c = send(url, 'C')
    const cDone = await c.response
    expect(cDone.status).toBe(200)
    const hold = cDone.body.delayedMs as number
    expect(hold).toBeLessThanOrEqual(a.aEnd + SLOT_MS - c.sentAt + SLACK_MS)
    expect(hold).toBeGreaterThanOrEqual(a.aStart + SLOT_MS - c.sentAt - TOLERANCE_MS)
    // past the end of B's slot, B's handler has still not run
    await tick(200)
    expect(app.served).toEqual(['A', 'C'])
    expect(await metric(app, 'fastify_gcra_delay_seconds_count', { gone: 'true' })).toBe(1)
    expect(await metric(app, 'fastify_gcra_delay_seconds_count', { gone: 'false' })).toBe(1)
  }

  it('is never served, and its charge is refunded: the next request takes its slot', async () => {
    const app = await shapedApp(store)
    const url = await listening(app)
    const a = await leaveWhileHeld(app, url)
    await expectSlotGivenBack(app, url, a)
  }, 20_000)

  it('holds the caller\'s concurrency slot while held, and gives it back when its client leaves', async () => {
    const app = await shapedApp(store, {}, { concurrency: 1 })
    const url = await listening(app)
    const a = send(url, 'A')
    expect((await a.response).status).toBe(200)
    const aEnd = Date.now()
    await eventually(() => app.rateLimiter.stats().slotsHeld === 0)
    const b = send(url, 'B')
    const bGone = b.response.then(() => 'answered', () => 'gone')
    await eventually(async () => (await metric(app, 'fastify_gcra_delayed_requests')) === 1)
    expect(app.rateLimiter.stats().slotsHeld).toBe(1)
    // the held request is in flight: the caller's one slot is taken
    const d = await send(url, 'D').response
    expect(d.status).toBe(429)
    expect(d.body['violated-policies']).toEqual(['concurrency'])
    await tick(100)
    b.destroy()
    expect(await bGone).toBe('gone')
    await eventually(() => app.rateLimiter.stats().slotsHeld === 0)
    await eventually(async () => (await metric(app, 'fastify_gcra_delay_seconds_count', { gone: 'true' })) === 1)
    // D was refused for concurrency before any charge: C still takes B's slot
    await expectSlotGivenBack(app, url, { aStart: a.sentAt, aEnd })
  }, 20_000)
})

/** Failed calls to the store, every kind together. */
async function storeErrors (app: FastifyInstance): Promise<number> {
  const text = (await app.inject('/metrics')).body
  return text.split('\n').filter(l => l.startsWith('fastify_gcra_store_errors_total{')).reduce((n, l) => n + Number(l.split(' ').pop()), 0)
}

describe.runIf(hasRedis)('a held request whose refund fails (redis)', () => {
  it('leaves no unhandled rejection and keeps the app answering', async () => {
    const rejections: unknown[] = []
    const onRejection = (reason: unknown): void => { rejections.push(reason) }
    process.on('unhandledRejection', onRejection)
    try {
      const client = redisClient()
      const app = await shapedApp({ name: 'redis', options: () => ({ store: { redis: client } }) })
      const url = await listening(app)
      expect((await send(url, 'A').response).status).toBe(200)
      const b = send(url, 'B')
      const bGone = b.response.then(() => 'answered', () => 'gone')
      await eventually(async () => (await metric(app, 'fastify_gcra_delayed_requests')) === 1)
      expect(await storeErrors(app)).toBe(0)
      // the store goes away under the held request: its refund cannot be made
      client.disconnect()
      b.destroy()
      expect(await bGone).toBe('gone')
      await eventually(async () => (await metric(app, 'fastify_gcra_delay_seconds_count', { gone: 'true' })) === 1)
      // the refund was tried on the closed client, and failed
      await eventually(async () => (await storeErrors(app)) > 0)
      await tick(300)
      expect(app.served).toEqual(['A'])
      // the store is down: this instance's own limits answer (onStoreError 'local'), never a 500
      const c = await send(url, 'C').response
      expect([200, 429]).toContain(c.status)
      expect(rejections).toEqual([])
    } finally {
      process.off('unhandledRejection', onRejection)
    }
  }, 20_000)
})
