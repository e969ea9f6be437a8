// Compiled by test/types.test.ts with `tsc --noEmit`: what must type-check does, and
// every `@ts-expect-error` line must really be an error (tsc fails on an unused one).
import Fastify, { type FastifyContextConfig, type FastifyRequest } from 'fastify'
import { Cluster, Redis } from 'ioredis'
import { Registry } from 'prom-client'
import gcra, { fastifyGcra, type LogRefusalsOptions, type MetricsOptions, type OpenApiOptions, type RateLimitInfo, type RateLimitSettlement, type RateLimiter, type RateLimiterStats, type RouteRateLimitConfig } from '../../lib/index.js'

const app = Fastify()

await app.register(gcra, {
  store: 'memory',
  key: (req) => req.headers['x-api-key'] ?? req.ip,
  tier: async (req) => (req.rateLimitKey === null ? null : 'premium'),
  tiers: { free: 1, premium: { multiplier: 5 } },
  limits: ['100/minute', { max: 10, per: '30s', burst: 20, name: 'bursty' }],
  global: ['200/day'],
  headers: 'both',
  prefix: 'gcra',
  hook: 'preHandler',
  errorResponseBuilder: (_req, ctx) => ({ wait: ctx.retryAfterSeconds, names: ctx.violated.map(p => p.name) }),
})
await app.register(fastifyGcra, { store: { redis: new Redis({ lazyConnect: true }) } })
await app.register(fastifyGcra, { store: { redis: new Cluster([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true }) } })
await app.register(fastifyGcra, { store: { redis: 'redis://127.0.0.1:6379' } })
await app.register(fastifyGcra, { metrics: true, logRefusals: true })
await app.register(fastifyGcra, { delay: '500ms', maxDelayed: 100, shadow: true })
await app.register(fastifyGcra, { delay: 250 })
// @ts-expect-error shadow is a boolean
await app.register(fastifyGcra, { shadow: 'yes' })
const shaped: RouteRateLimitConfig = { limits: ['1/second'], delay: '1s', shadow: false }
void shaped
app.get('/held', async (req) => {
  const info: RateLimitInfo | null = req.rateLimit
  const heldMs: number | undefined = info?.delayedMs
  const shadowed: boolean | undefined = info?.shadow
  return { heldMs, shadowed }
})
const metricsOptions: MetricsOptions = { registry: new Registry(), prefix: 'api_rl_', route: false }
const logOptions: LogRefusalsOptions = { perSecond: 5, level: 'warn' }
await app.register(fastifyGcra, { metrics: metricsOptions, logRefusals: logOptions })
await app.register(fastifyGcra, { metrics: { route: '/internal/metrics' } })
const openapi: OpenApiOptions = { errorResponseSchema: { type: 'object', properties: { wait: { type: 'integer' } } } }
await app.register(fastifyGcra, { openapi, errorResponseBuilder: (_req, ctx) => ({ wait: ctx.retryAfterSeconds }) })
await app.register(fastifyGcra, { openapi: false })

app.get('/health', { config: { rateLimit: false } }, async () => 'ok')
app.post('/batch', {
  config: { rateLimit: { limits: ['100/minute'], cost: (req: FastifyRequest) => (req.body as { inputs: unknown[] }).inputs.length } },
}, async (req) => {
  const info: RateLimitInfo | null = req.rateLimit
  return { remaining: info?.remaining, tier: info?.tier, policies: info?.policies.map(p => p.name) }
})
app.post('/async-cost', { config: { rateLimit: { cost: async () => 3, scope: 'shared', tiers: { premium: ['1/second'] } } } }, async () => 'ok')

app.addHook('onRequest', async (req) => {
  req.rateLimitKey = 'user-1'
  req.rateLimitTier = 'premium'
})

const limiter: RateLimiter = app.rateLimiter
const consumed: Promise<RateLimitInfo> = limiter.consume('user-1', ['10/minute'], 2, { scope: 'chat', tier: 'premium', global: true })
void consumed
void limiter.peek('user-1', ['10/minute'])
void limiter.reset('user-1')
const stats: RateLimiterStats = limiter.stats()
const evicted: number | undefined = stats.evictedLive
void evicted

const exempt: RouteRateLimitConfig = false
void exempt

// @ts-expect-error a cost is a number or a function, not a string
const badCost: RouteRateLimitConfig = { cost: '2' }
void badCost
// @ts-expect-error the same in a route's config
const badRoute: FastifyContextConfig = { rateLimit: { limits: ['1/minute'], cost: '2' } }
void badRoute
// @ts-expect-error rateLimit is false or an object, never true
const badFlag: FastifyContextConfig = { rateLimit: true }
void badFlag
// @ts-expect-error headers is 'draft' | 'legacy' | 'both' | false
await app.register(gcra, { headers: 'ietf' })
// @ts-expect-error a limit object needs per
await app.register(gcra, { limits: [{ max: 5 }] })
// @ts-expect-error the store is 'memory', { memory } or { redis }
await app.register(gcra, { store: 'redis' })
// @ts-expect-error the tier resolver returns a name, not a number
await app.register(gcra, { tier: () => 5 })
// @ts-expect-error the metrics route is a path or false, never true
await app.register(gcra, { metrics: { route: true } })
// @ts-expect-error a registry is a prom-client Registry, not a URL
await app.register(gcra, { metrics: { registry: 'http://prometheus' } })
// @ts-expect-error refusal logs go at debug, info or warn
await app.register(gcra, { logRefusals: { level: 'trace' } })
// @ts-expect-error openapi is a boolean or an object, not a path
await app.register(gcra, { openapi: '/documentation' })
// @ts-expect-error consume resolves to a RateLimitInfo, not a number
const n: number = app.rateLimiter.consume('k', ['1/minute'])
void n

// concurrency, settle and scale
await app.register(gcra, { scale: () => 0.5, pressureScale: 0.5, concurrencyLeaseMs: 30_000 })
const withSlots: RouteRateLimitConfig = {
  limits: ['100/minute'],
  cost: (req) => (req.body as { max: number }).max,
  concurrency: { perCaller: 2, route: 8 },
  tiers: { premium: { limits: ['500/minute'], concurrency: 4 } },
  settle: (_req, reply) => Number(reply.getHeader('x-tokens')),
  scale: () => 1,
}
void withSlots
app.post('/gen', { config: { rateLimit: { concurrency: 2 } } }, async (_req, reply) => {
  const settlement: RateLimitSettlement | null = reply.rateLimit
  const after: RateLimitInfo | null = await settlement!.settle(12)
  const charged: number = settlement!.charged
  return { after, charged }
})
limiter.setScale(0.5)
limiter.setScale(0.5, 'POST /gen')
const scale: number = limiter.getScale('POST /gen')
void scale
const slots: number = stats.slotsHeld
void slots
// @ts-expect-error concurrency is a number or { perCaller?, route? }
const badSlots: RouteRateLimitConfig = { concurrency: '2' }
void badSlots
// @ts-expect-error settle returns the actual cost, a number
const badSettle: RouteRateLimitConfig = { settle: () => 'many' }
void badSettle
// @ts-expect-error reply.rateLimit is read-only
app.get('/ro', async (_req, reply) => { reply.rateLimit = null })
