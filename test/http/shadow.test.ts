/**
 * Shadow mode: a shadow route and an enforced twin (same limits, own scopes) fed the same
 * requests decide alike, advertise alike and charge alike; only the shadow one serves
 * every request. Its would-be refusals (429, 413, concurrency) charge nothing.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest, LightMyRequestResponse } from 'fastify'
import { describe, expect, it } from 'vitest'
import gcra, { FST_GCRA_INVALID_OPTION, type FastifyGcraOptions, type RouteRateLimitConfig } from '../../lib/index.js'
import { appWith, newApp, ok, storeCases, type StoreCase } from '../helpers/app.js'

type Mode = 'shadow' | 'enforced'
const MODES: readonly Mode[] = ['shadow', 'enforced']
type Settings = Exclude<RouteRateLimitConfig, false>

interface Sent { headers?: Record<string, string>, payload?: unknown }

const Items = Type.Object({ items: Type.Array(Type.Number(), { maxItems: 64 }) })
const itemsCost = (req: FastifyRequest) => (req.body as { items: number[] }).items.length
const items = (n: number, headers: Record<string, string> = {}): Sent => ({ payload: { items: Array.from({ length: n }, (_, i) => i) }, headers })
const as = (user: string, tier?: string): Record<string, string> => tier === undefined ? { 'x-user': user } : { 'x-user': user, 'x-tier': tier }

/** A gate handlers wait on. */
function gate (): { wait: () => Promise<void>, open: () => void } {
  let open!: () => void
  const promise = new Promise<void>(resolve => { open = resolve })
  return { wait: () => promise, open: () => open() }
}

/** Status codes of `n` GET requests to `url`, one after another. */
async function codes (app: FastifyInstance, n: number, url: string): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await app.inject(url)).statusCode)
  return out
}

const tick = (ms = 30): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

async function eventually (check: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not reached in time')
    await tick(10)
  }
}

interface Twins {
  app: FastifyInstance
  /** Handler runs per route; and calls of the cost function, when it is one. */
  ran: Record<Mode, number>
  costed: Record<Mode, number>
}

/** POST /shadow and POST /enforced: the same settings in scopes 'shadow' and 'enforced'. */
async function twins (store: StoreCase, settings: Settings, options: Partial<FastifyGcraOptions> = {}, hold?: () => Promise<void>): Promise<Twins> {
  const app = await appWith(store, { key: (req) => String(req.headers['x-user'] ?? 'anon'), ...options })
  const ran = { shadow: 0, enforced: 0 }
  const costed = { shadow: 0, enforced: 0 }
  for (const mode of MODES) {
    const given = settings.cost
    const cost = typeof given === 'function' ? (req: FastifyRequest) => { costed[mode]++; return given(req) } : given
    app.post(`/${mode}`, {
      schema: typeof given === 'function' ? { body: Items } : {},
      config: { rateLimit: { ...settings, cost, scope: mode, shadow: mode === 'shadow' } },
    }, async (req) => {
      ran[mode]++
      if (hold !== undefined && req.headers['x-hold'] === '1') await hold()
      return { rl: req.rateLimit }
    })
  }
  await app.ready()
  return { app, ran, costed }
}

/** `request.rateLimit` with its times in whole seconds, as the fields give them. */
function coarse (rl: Record<string, unknown>): unknown {
  const seconds = (v: Record<string, unknown>) => ({ ...v, resetMs: Math.ceil(v.resetMs as number / 1000), retryAfterMs: Math.ceil(v.retryAfterMs as number / 1000) })
  return { ...seconds(rl), policies: (rl.policies as Array<Record<string, unknown>>).map(seconds) }
}

interface Pair { status: number, allowed: boolean, rl: Record<string, unknown>, shadow: LightMyRequestResponse, enforced: LightMyRequestResponse }

/** One request to each twin: the shadow one is served, and tells what the enforced one did. */
async function pair ({ app, ran }: Twins, sent: Sent = {}): Promise<Pair> {
  const before = ran.shadow
  const shadow = await app.inject({ method: 'POST', url: '/shadow', ...sent } as never)
  const enforced = await app.inject({ method: 'POST', url: '/enforced', ...sent } as never)
  expect(shadow.statusCode).toBe(200)
  expect(ran.shadow).toBe(before + 1)
  // not a refusal: no Retry-After, whatever the decision
  expect(shadow.headers['retry-after']).toBeUndefined()
  expect(enforced.headers.ratelimit).toBeDefined()
  expect(shadow.headers.ratelimit).toBe(enforced.headers.ratelimit)
  expect(shadow.headers['ratelimit-policy']).toBe(enforced.headers['ratelimit-policy'])
  const rl = shadow.json<{ rl: Record<string, unknown> }>().rl
  expect(rl.shadow).toBe(true)
  // an admitted twin's request.rateLimit is the shadow one's, but for the flag (and the ms between them)
  if (enforced.statusCode === 200) expect(coarse(rl)).toEqual(coarse({ ...enforced.json<{ rl: Record<string, unknown> }>().rl, shadow: true }))
  return { status: enforced.statusCode, allowed: rl.allowed as boolean, rl, shadow, enforced }
}

/** The requests in order: the enforced statuses, and the shadow twin agrees request by request. */
async function sequence (t: Twins, sent: Sent[]): Promise<Pair[]> {
  const out: Pair[] = []
  for (const one of sent) out.push(await pair(t, one))
  expect(out.map(p => p.allowed)).toEqual(out.map(p => p.status === 200))
  return out
}

/** Units left in each policy of a scope, read without charging. */
async function left (app: FastifyInstance, user: string, limits: string[], scope: Mode, tier?: string): Promise<number[]> {
  return (await app.rateLimiter.peek(user, limits, { scope, tier: tier ?? null })).policies.map(p => p.remaining)
}

describe.each(storeCases)('shadow mode on the $name store', (store) => {
  it('decides, advertises and charges like its enforced twin, and serves every request', async () => {
    const limits = ['3/minute', '5/hour']
    const t = await twins(store, { limits })
    const done = await sequence(t, [...Array.from({ length: 5 }, () => ({ headers: as('a') })), { headers: as('b') }])
    expect(done.map(p => p.status)).toEqual([200, 200, 200, 429, 429, 200])
    expect(t.ran).toEqual({ shadow: 6, enforced: 4 })
    expect(done[3]!.rl).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: expect.any(Number), delayedMs: 0 })
    expect(done[3]!.rl.retryAfterMs).toBeGreaterThan(0)
    expect(done[4]!.shadow.headers.ratelimit).toBe('"3/minute";r=0;t=20, "5/hour";r=2;t=720')
    // the would-be refusals charged nothing: 2 of the hour's 5 are left in both
    for (const scope of MODES) expect(await left(t.app, 'a', limits, scope)).toEqual([0, 2])
  })

  it('charges a fixed cost like its enforced twin', async () => {
    const t = await twins(store, { limits: ['5/minute'], cost: 2 })
    const done = await sequence(t, Array.from({ length: 4 }, () => ({ headers: as('a') })))
    expect(done.map(p => p.status)).toEqual([200, 200, 429, 429])
    expect(done.map(p => p.rl.cost)).toEqual([2, 2, 2, 2])
    expect(done[3]!.shadow.headers.ratelimit).toBe('"5/minute";r=1;t=12')
    for (const scope of MODES) expect(await left(t.app, 'a', ['5/minute'], scope)).toEqual([1])
  })

  it('charges a body cost like its enforced twin: a free batch, a would-be 413 and 429s charge nothing', async () => {
    const t = await twins(store, { limits: ['10/minute'], cost: itemsCost })
    const done = await sequence(t, [items(4), items(0), items(11), items(5), items(3), items(1), items(1)].map(s => ({ ...s, headers: as('a') })))
    expect(done.map(p => p.status)).toEqual([200, 200, 413, 200, 429, 200, 429])
    expect(done.map(p => p.rl.cost)).toEqual([4, 0, 11, 5, 3, 1, 1])
    expect(done.map(p => p.rl.remaining)).toEqual([6, 6, 6, 1, 1, 0, 0])
    // a 413: retrying cannot help (Infinity, null in JSON), and the largest cost is named
    expect(done[2]!.rl).toMatchObject({ allowed: false, retryAfterMs: null, maxCost: 10 })
    expect(done[2]!.shadow.headers.ratelimit).toBe('"10/minute";r=6;t=6')
    // the last was refused in onRequest, before the body: neither twin computed its cost
    expect(t.costed).toEqual({ shadow: 6, enforced: 6 })
    expect(t.ran).toEqual({ shadow: 7, enforced: 4 })
    for (const scope of MODES) expect(await left(t.app, 'a', ['10/minute'], scope)).toEqual([0])
  })

  it('charges each tier like its enforced twin', async () => {
    const limits = ['4/minute']
    const t = await twins(store, { limits, cost: itemsCost }, {
      tiers: { free: 1, premium: 5 },
      tier: (req) => req.headers['x-tier'] as string | undefined,
    })
    const free = as('f', 'free')
    const premium = as('p', 'premium')
    const done = await sequence(t, [
      items(5, free), items(3, free), items(3, free),
      items(5, premium), items(5, premium), items(5, premium), items(3, premium), items(3, premium),
      items(3, as('n')), items(2, as('n')),
    ])
    // 5 never fits free (burst 4): a 413; premium holds 20
    expect(done.map(p => p.status)).toEqual([413, 200, 429, 200, 200, 200, 200, 429, 200, 429])
    expect(done.map(p => p.rl.tier)).toEqual([...Array(3).fill('free'), ...Array(5).fill('premium'), null, null])
    expect(done[3]!.shadow.headers['ratelimit-policy']).toBe('"4/minute";q=20;w=60')
    for (const scope of MODES) {
      expect(await left(t.app, 'f', limits, scope, 'free')).toEqual([1])
      expect(await left(t.app, 'p', limits, scope, 'premium')).toEqual([2])
      expect(await left(t.app, 'n', limits, scope)).toEqual([1])
    }
  })

  it('serves a would-be concurrency refusal and charges its rate limit nothing', async () => {
    const g = gate()
    const limits = ['5/minute']
    const t = await twins(store, { limits, concurrency: 1 }, {}, g.wait)
    const first = MODES.map(mode => t.app.inject({ method: 'POST', url: `/${mode}`, headers: { ...as('a'), 'x-hold': '1' } }))
    await tick()
    // the same caller again while its first request is in flight
    const second = await pair(t, { headers: as('a') })
    expect(second.status).toBe(429)
    expect(second.shadow.headers.ratelimit).toBe('"concurrency";r=0')
    expect(second.rl).toMatchObject({ allowed: false, shadow: true, policies: [{ name: 'concurrency' }] })
    g.open()
    for (const r of await Promise.all(first)) {
      expect(r.statusCode).toBe(200)
      expect(r.headers.ratelimit).toContain('"5/minute";r=4;')
    }
    await eventually(() => t.app.rateLimiter.stats().slotsHeld === 0)
    const third = await pair(t, { headers: as('a') })
    expect(third.status).toBe(200)
    // two charged, not three
    expect(third.shadow.headers.ratelimit).toContain('"5/minute";r=3;')
    for (const scope of MODES) expect(await left(t.app, 'a', limits, scope)).toEqual([3])
  })

  it('as a plugin option, applies to every limited route but one that says shadow: false', async () => {
    const app = await appWith(store, { shadow: true, limits: ['1/minute'] })
    let ran = 0
    const seen = async (req: FastifyRequest) => { ran++; return { rl: req.rateLimit } }
    app.get('/default', seen)
    app.get('/own', { config: { rateLimit: { limits: ['1/minute'] } } }, seen)
    app.get('/enforced', { config: { rateLimit: { limits: ['1/minute'], shadow: false } } }, seen)
    for (const url of ['/default', '/own']) {
      const [one, two] = [await app.inject(url), await app.inject(url)]
      expect([one.statusCode, two.statusCode]).toEqual([200, 200])
      expect([one.json().rl, two.json().rl]).toMatchObject([{ allowed: true, shadow: true }, { allowed: false, shadow: true }])
      expect(two.headers.ratelimit).toBe('"1/minute";r=0;t=60')
    }
    expect(await codes(app, 2, '/enforced')).toEqual([200, 429])
    expect(ran).toBe(5)
  })

  it('as a route setting, applies under an enforcing plugin to that route only', async () => {
    const app = await appWith(store)
    app.get('/shadow', { config: { rateLimit: { limits: ['1/minute'], shadow: true } } }, async req => ({ rl: req.rateLimit }))
    app.get('/enforced', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    expect((await app.inject('/shadow')).statusCode).toBe(200)
    const two = await app.inject('/shadow')
    expect(two.statusCode).toBe(200)
    expect(two.json().rl).toMatchObject({ allowed: false, shadow: true })
    expect(await codes(app, 2, '/enforced')).toEqual([200, 429])
  })
})

describe('the shadow option is validated at registration', () => {
  it('refuses a plugin shadow that is not a boolean, naming its path', async () => {
    const app = newApp()
    const error = await app.register(gcra, { shadow: 'yes' as never }).ready().then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(FST_GCRA_INVALID_OPTION)
    expect((error as { code: string }).code).toBe('FST_GCRA_INVALID_OPTION')
    expect((error as Error).message).toBe('fastify-gcra: options.shadow: expected true or false, got "yes"')
  })

  it('refuses a route shadow that is not a boolean, naming the route and the path', async () => {
    const app = newApp()
    await app.register(gcra)
    const error = await (async () => {
      app.get('/r', { config: { rateLimit: { limits: ['1/minute'], shadow: 'yes' as never } } }, ok)
      await app.ready()
    })().then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(FST_GCRA_INVALID_OPTION)
    expect((error as Error).message).toBe('fastify-gcra: route GET /r: config.rateLimit.shadow: expected true or false, got "yes"')
  })
})
