/**
 * Plugin options and route settings: validated once at registration, normalised into
 * frozen objects. Nothing invalid is replaced by a default.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import { FST_GCRA_INVALID_OPTION, describe } from './errors.js'
import { normaliseLimit, type Limit, type LimitSpec } from './limit.js'
import { assertValid, checkOptions, checkRouteConfig } from './schemas.js'
import type { RateLimitContext } from './types.js'

export type MaybePromise<T> = T | Promise<T>

export type StoreErrorPolicy = 'allow' | 'deny' | 'local'

/** What a cost may be: units per request, or a function of the (validated) request. */
export type CostSetting = number | ((request: FastifyRequest) => MaybePromise<number>)

/** A scale factor of the admitted rates, in (0, 1], for a request (e.g. 0.5 while a model warms up). */
export type ScaleFunction = (request: FastifyRequest) => number

/** The true cost of a request, known after its handler ran (e.g. tokens generated). */
export type SettleFunction = (request: FastifyRequest, reply: FastifyReply) => MaybePromise<number>

/** Requests in flight: per caller (a number), or `{ perCaller?, route? }`. */
export type ConcurrencySetting = number | { perCaller?: number, route?: number }

export interface FastifyGcraOptions {
  /**
   * Where bucket state lives. `'memory'` keeps it in this process (bounded, LRU);
   * `{ redis }` shares it between every app instance on one Redis or Redis Cluster.
   * @default 'memory'
   */
  store?: 'memory' | { memory: { maxKeys?: number } } | { redis: Redis | Cluster | string }
  /**
   * The caller's identity: a string, a finite number, or a string array (a repeated
   * header: its values joined with ', '). Sync or async.
   * @default request.rateLimitKey, else the client IP (IPv6 grouped by /64)
   */
  key?: (request: FastifyRequest) => MaybePromise<string | number | readonly string[]>
  /**
   * The caller's tier name, resolved on the server. Sync or async; null/undefined: no tier.
   * @default request.rateLimitTier
   */
  tier?: (request: FastifyRequest) => MaybePromise<string | null | undefined>
  /**
   * Tier multipliers of max and burst, e.g. `{ free: 1, premium: 5 }`.
   * @default {}
   */
  tiers?: Record<string, number | { multiplier: number }>
  /**
   * Limits of every route that has no `limits` of its own. Without it, only routes with
   * `config.rateLimit` (and the `global` limits) are limited.
   * @default undefined
   */
  limits?: LimitSpec[]
  /**
   * App-wide limits per identity, shared by every limited route.
   * @default []
   */
  global?: LimitSpec[]
  /**
   * Which rate-limit fields to send: IETF draft-10 `RateLimit`/`RateLimit-Policy`,
   * `X-RateLimit-*`, both, or none.
   * @default 'draft'
   */
  headers?: 'draft' | 'legacy' | 'both' | false
  /**
   * Namespace of the store's keys, for apps sharing one Redis.
   * @default 'gcra'
   */
  prefix?: string
  /**
   * A secret that keys the hash of identities (HMAC-SHA256), so store keys cannot be
   * linked to an IP address or a guessed key without it. Every instance sharing a store
   * needs the same one; changing it starts every bucket afresh.
   * @default undefined (plain SHA-256)
   */
  keySecret?: string
  /**
   * Where fixed costs are charged. `'preHandler'` moves every charge after auth hooks
   * registered after the plugin (and after body parsing).
   * @default 'onRequest'
   */
  hook?: 'onRequest' | 'preHandler'
  /**
   * The longest a request waits for the store, in ms; then `onStoreError` applies.
   * @default 100
   */
  storeTimeoutMs?: number
  /**
   * What a request gets when the store fails, times out or its circuit is open:
   * `'allow'` serves it without rate-limit fields; `'deny'` answers 503 with
   * `Retry-After: 1`; `'local'` decides with an in-memory GCRA in this process for the
   * duration of the outage.
   * @default 'allow'
   */
  onStoreError?: StoreErrorPolicy
  /**
   * Builds the body of a 429. Receives the request and what was exceeded.
   * @default an RFC 9457 problem (`application/problem+json`)
   */
  errorResponseBuilder?: (request: FastifyRequest, context: RateLimitContext) => unknown
  /**
   * Scale of every route's admitted rates (max and burst), in (0, 1], computed per request:
   * lower it while a model warms up or the process is under pressure. Multiplies with the
   * route's `scale`, `rateLimiter.setScale()` and `pressureScale`; values are rounded to
   * hundredths and kept at least 0.01.
   * @default undefined (1)
   */
  scale?: ScaleFunction
  /**
   * With `@fastify/under-pressure` registered: the scale of admitted rates while
   * `fastify.isUnderPressure()` is true.
   * @default undefined (not used)
   */
  pressureScale?: number
  /**
   * How long a concurrency slot in Redis outlives an instance that stopped renewing it
   * (a crash). Slots of requests in flight are renewed every third of it.
   * @default 60000
   */
  concurrencyLeaseMs?: number
  /**
   * Prometheus metrics (needs the optional peer dependency `prom-client`): requests by
   * route, tier and outcome, cost charged, store latency and errors, breakers, deny-cache
   * hits. `true` is `{}`: a registry of the plugin's own, served at `/metrics`.
   * @default false
   */
  metrics?: boolean | MetricsOptions
  /**
   * Log refused requests (429, 413, 503) through the request's logger, at most
   * `perSecond` lines per second per plugin instance; the next line logged counts the
   * ones left out. `true` is `{}`.
   * @default false
   */
  logRefusals?: boolean | LogRefusalsOptions
  /**
   * Document each limited route's 429 (and 413, 503 where they can happen) and its
   * rate-limit headers in the route's response schemas, for `@fastify/swagger`. The added
   * schemas are documentation only: they never change a response.
   * @default true
   */
  openapi?: boolean | OpenApiOptions
}

/** The part of a prom-client `Registry` the plugin uses (a prom-client 15 `Registry` is one). */
export interface MetricsRegistry {
  metrics(): Promise<string>
  readonly contentType: string
  getSingleMetric(name: string): unknown
  removeSingleMetric(name: string): void
}

export interface MetricsOptions {
  /**
   * The registry the metrics join: pass yours to serve them with your own metrics.
   * @default a new Registry of this plugin instance (not prom-client's global one)
   */
  registry?: MetricsRegistry
  /**
   * Prepended to every metric name.
   * @default 'fastify_gcra_'
   */
  prefix?: string
  /**
   * The URL of a GET route (exempt from limits, hidden from OpenAPI) serving the
   * registry in the Prometheus text format; `false`: no route (then give a `registry`
   * and serve it yourself).
   * @default '/metrics'
   */
  route?: string | false
}

export interface LogRefusalsOptions {
  /**
   * The most refusal lines logged per second by this plugin instance.
   * @default 10
   */
  perSecond?: number
  /**
   * The log level of those lines.
   * @default 'info'
   */
  level?: 'debug' | 'info' | 'warn'
}

export interface OpenApiOptions {
  /**
   * The JSON schema of the 429 body your `errorResponseBuilder` returns, for the
   * documentation (sent as `application/json`).
   * @default none: a custom builder's body is documented without a schema
   */
  errorResponseSchema?: Record<string, unknown>
}

/** Route `config.rateLimit`. */
export type RouteRateLimitConfig = false | {
  /**
   * This route's limits.
   * @default the plugin's `limits`
   */
  limits?: LimitSpec[]
  /**
   * Units one request costs: a number, or a function of the validated request (sync or
   * async), charged after parsing and validation.
   * @default 1
   */
  cost?: CostSetting
  /**
   * Routes with the same scope share their buckets.
   * @default the route itself ('METHOD /url')
   */
  scope?: string
  /**
   * Limits of a named tier on this route, used as written (no multiplier); in the object
   * form, also the tier's concurrency per caller.
   * @default {}
   */
  tiers?: Record<string, LimitSpec[] | { limits?: LimitSpec[], concurrency?: number }>
  /**
   * Requests in flight at once: per caller (a number, or `perCaller`; multiplied by the
   * tier's multiplier unless the tier sets its own), and for everyone on this route
   * (`route`, a model's capacity). Refused with 429 (per caller) or 503 (route).
   * @default undefined (no concurrency limit)
   */
  concurrency?: ConcurrencySetting
  /**
   * The true cost of a request after its handler ran; the difference from the charged
   * (estimated) cost is refunded or charged, atomically. Called after the response is
   * sent, unless the handler called `reply.rateLimit.settle()`.
   * @default undefined
   */
  settle?: SettleFunction
  /**
   * This route's scale of admitted rates, in (0, 1] (multiplies with the plugin's).
   * @default undefined (1)
   */
  scale?: ScaleFunction
  /**
   * This route's answer when the store fails (see the plugin option).
   * @default the plugin's onStoreError
   */
  onStoreError?: StoreErrorPolicy
}

export type StoreSetting =
  | { readonly kind: 'memory', readonly maxKeys: number }
  | { readonly kind: 'redis', readonly redis: Redis | Cluster | string }

export interface NormalisedOptions {
  readonly store: StoreSetting
  readonly key: FastifyGcraOptions['key']
  readonly tier: FastifyGcraOptions['tier']
  /** Tier name → multiplier. */
  readonly tiers: ReadonlyMap<string, number>
  readonly limits: readonly Limit[] | undefined
  readonly global: readonly Limit[]
  readonly headers: 'draft' | 'legacy' | 'both' | false
  readonly prefix: string
  readonly keySecret: string | undefined
  readonly hook: 'onRequest' | 'preHandler'
  readonly storeTimeoutMs: number
  readonly onStoreError: StoreErrorPolicy
  readonly errorResponseBuilder: FastifyGcraOptions['errorResponseBuilder']
  readonly scale: ScaleFunction | undefined
  readonly pressureScale: number | undefined
  readonly concurrencyLeaseMs: number
  /** undefined: metrics off. */
  readonly metrics: { readonly registry: MetricsRegistry | undefined, readonly prefix: string, readonly route: string | false } | undefined
  /** undefined: refusals are not logged. */
  readonly logRefusals: { readonly perSecond: number, readonly level: 'debug' | 'info' | 'warn' } | undefined
  /** undefined: routes are not documented. */
  readonly openapi: { readonly errorResponseSchema: Record<string, unknown> | undefined } | undefined
}

export interface ConcurrencySettings {
  readonly perCaller: number | undefined
  readonly route: number | undefined
  /** Per-caller slots of tiers that set their own. */
  readonly tiers: ReadonlyMap<string, number>
}

export interface RouteSettings {
  readonly limits: readonly Limit[] | undefined
  readonly cost: CostSetting
  readonly scope: string | undefined
  readonly tiers: ReadonlyMap<string, readonly Limit[]>
  readonly onStoreError: StoreErrorPolicy | undefined
  readonly concurrency: ConcurrencySettings | undefined
  readonly settle: SettleFunction | undefined
  readonly scale: ScaleFunction | undefined
}

export const DEFAULT_MAX_KEYS = 100_000

/** Normalise an array of limit specs whose shape the schema has checked; `path` for errors. */
export function normaliseLimits (specs: readonly LimitSpec[], path: string, namePrefix = ''): Limit[] {
  const out: Limit[] = []
  const names = new Set<string>()
  specs.forEach((spec, i) => {
    const result = normaliseLimit(spec)
    if ('expected' in result) {
      const given = typeof spec === 'string' || result.path === '' ? spec : (spec as unknown as Record<string, unknown>)[result.path.slice(1)]
      throw new FST_GCRA_INVALID_OPTION(`${path}[${i}]${result.path}`, result.expected, describe(given))
    }
    const explicitName = typeof spec === 'object' && spec.name !== undefined
    const limit = explicitName || namePrefix === '' ? result : Object.freeze({ ...result, name: `${namePrefix}${result.name}` })
    if (names.has(limit.name)) {
      throw new FST_GCRA_INVALID_OPTION(`${path}[${i}]`, `limits with distinct names (give one a name)`, `a second limit named '${limit.name}'`)
    }
    names.add(limit.name)
    out.push(limit)
  })
  return out
}

export function normaliseOptions (options: unknown): NormalisedOptions {
  const given = options ?? {}
  assertValid(checkOptions, given, 'options')
  const opts = given as FastifyGcraOptions

  let store: StoreSetting
  const storeOpt = opts.store ?? 'memory'
  if (storeOpt === 'memory') {
    store = { kind: 'memory', maxKeys: DEFAULT_MAX_KEYS }
  } else if ('memory' in storeOpt) {
    store = { kind: 'memory', maxKeys: storeOpt.memory.maxKeys ?? DEFAULT_MAX_KEYS }
  } else {
    const redis = storeOpt.redis
    if (typeof redis === 'string') {
      if (!/^rediss?:\/\//.test(redis)) throw new FST_GCRA_INVALID_OPTION('options.store.redis', "a URL 'redis://...' or 'rediss://...'", describe(redis))
    } else if (typeof (redis as { defineCommand?: unknown }).defineCommand !== 'function' || typeof (redis as { del?: unknown }).del !== 'function') {
      throw new FST_GCRA_INVALID_OPTION('options.store.redis', 'an ioredis Redis or Cluster instance', describe(Object.prototype.toString.call(redis)))
    }
    store = { kind: 'redis', redis }
  }

  const tiers = new Map<string, number>()
  for (const [name, value] of Object.entries(opts.tiers ?? {})) {
    tiers.set(name, typeof value === 'number' ? value : value.multiplier)
  }

  const prefix = opts.prefix ?? 'gcra'
  if (/[{}]/.test(prefix)) throw new FST_GCRA_INVALID_OPTION('options.prefix', "a string without '{' or '}' (the plugin places the Cluster hash tag)", describe(prefix))

  const limits = opts.limits === undefined ? undefined : normaliseLimits(opts.limits, 'options.limits')
  const global = normaliseLimits(opts.global ?? [], 'options.global', 'global ')

  let metrics: NormalisedOptions['metrics']
  if (opts.metrics !== undefined && opts.metrics !== false) {
    const m = opts.metrics === true ? {} : opts.metrics
    if (m.registry !== undefined) {
      const missing = (['metrics', 'registerMetric', 'getSingleMetric', 'removeSingleMetric'] as const).filter(f => typeof (m.registry as unknown as Record<string, unknown>)[f] !== 'function')
      if (missing.length > 0) throw new FST_GCRA_INVALID_OPTION('options.metrics.registry', 'a prom-client Registry', `an object without ${missing.join(', ')}()`)
    }
    const route = m.route ?? '/metrics'
    if (route === false && m.registry === undefined) {
      throw new FST_GCRA_INVALID_OPTION('options.metrics.route', 'a URL path, or false together with a registry of yours (else nothing could read the metrics)', 'false without a registry')
    }
    metrics = Object.freeze({ registry: m.registry, prefix: m.prefix ?? 'fastify_gcra_', route })
  }
  const logRefusals = opts.logRefusals === undefined || opts.logRefusals === false
    ? undefined
    : Object.freeze({ perSecond: (opts.logRefusals === true ? undefined : opts.logRefusals.perSecond) ?? 10, level: (opts.logRefusals === true ? undefined : opts.logRefusals.level) ?? 'info' })
  const openapi = opts.openapi === false
    ? undefined
    : Object.freeze({ errorResponseSchema: opts.openapi === undefined || opts.openapi === true ? undefined : opts.openapi.errorResponseSchema })

  return Object.freeze({
    store: Object.freeze(store),
    key: opts.key,
    tier: opts.tier,
    tiers,
    limits: limits === undefined ? undefined : Object.freeze(limits),
    global: Object.freeze(global),
    headers: opts.headers ?? 'draft',
    prefix,
    keySecret: opts.keySecret,
    hook: opts.hook ?? 'onRequest',
    storeTimeoutMs: opts.storeTimeoutMs ?? 100,
    onStoreError: opts.onStoreError ?? 'allow',
    errorResponseBuilder: opts.errorResponseBuilder,
    scale: opts.scale,
    pressureScale: opts.pressureScale,
    concurrencyLeaseMs: opts.concurrencyLeaseMs ?? 60_000,
    metrics,
    logRefusals,
    openapi,
  })
}

/** Normalise a route's `config.rateLimit` (not `false`); `root` names the route for errors. */
export function normaliseRouteConfig (config: unknown, root: string, tiers: ReadonlyMap<string, number>): RouteSettings {
  assertValid(checkRouteConfig, config, root)
  const cfg = config as Exclude<RouteRateLimitConfig, false>
  const routeTiers = new Map<string, readonly Limit[]>()
  const tierSlots = new Map<string, number>()
  for (const [name, setting] of Object.entries(cfg.tiers ?? {})) {
    if (!tiers.has(name)) {
      throw new FST_GCRA_INVALID_OPTION(`${root}.tiers`, `a tier declared in the plugin's tiers (${[...tiers.keys()].join(', ') || 'none declared'})`, describe(name))
    }
    const specs = Array.isArray(setting) ? setting : setting.limits
    if (specs !== undefined) routeTiers.set(name, Object.freeze(normaliseLimits(specs, `${root}.tiers.${name}${Array.isArray(setting) ? '' : '.limits'}`)))
    if (!Array.isArray(setting) && setting.concurrency !== undefined) tierSlots.set(name, setting.concurrency)
  }
  const given = cfg.concurrency
  let concurrency: ConcurrencySettings | undefined
  if (given !== undefined || tierSlots.size > 0) {
    const perCaller = typeof given === 'number' ? given : given?.perCaller
    if (perCaller === undefined && tierSlots.size > 0) {
      throw new FST_GCRA_INVALID_OPTION(`${root}.concurrency`, 'a per-caller concurrency for callers of other tiers (tiers set their own)', describe(given))
    }
    concurrency = Object.freeze({ perCaller, route: typeof given === 'number' ? undefined : given?.route, tiers: tierSlots })
  }
  return Object.freeze({
    limits: cfg.limits === undefined ? undefined : Object.freeze(normaliseLimits(cfg.limits, `${root}.limits`)),
    cost: cfg.cost ?? 1,
    scope: cfg.scope,
    tiers: routeTiers,
    onStoreError: cfg.onStoreError,
    concurrency,
    settle: cfg.settle,
    scale: cfg.scale,
  })
}
