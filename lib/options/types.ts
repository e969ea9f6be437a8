/**
 * The public shapes of the plugin options and of a route's `config.rateLimit`, with their
 * defaults. `schemas.ts` checks values against the same shapes (a type test keeps the two equal).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Cluster, Redis } from 'ioredis'
import type { LimitSpec } from '../limits/limit.js'
import type { RateLimitContext } from '../types.js'
import type { MaybePromise } from '../util/maybe.js'

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
   * `'local'` decides with an in-memory GCRA in this process for the duration of the
   * outage (each instance limits on its own: never silently unlimited); `'allow'` serves
   * it without rate-limit fields; `'deny'` answers 503 with `Retry-After: 1`.
   * @default 'local'
   */
  onStoreError?: StoreErrorPolicy
  /**
   * Shaping instead of refusing, for every limited route (a route's `delay` overrides it):
   * a request that fits its limits within this wait is charged at once, held until its
   * slot, then served; beyond it, 429 at once. In ms, or a duration string (`'500ms'`, `'2s'`).
   * @default 0 (refuse at once)
   */
  delay?: number | string
  /**
   * The most requests held at once on this instance (see `delay`); past it, a request that
   * would have to wait is refused at once.
   * @default 1000
   */
  maxDelayed?: number
  /**
   * Shadow mode for every limited route (a route's `shadow` overrides it): every decision is
   * made, charged and reported as if enforced, but the request is served. For rolling out or
   * tuning limits on live traffic.
   * @default false
   */
  shadow?: boolean
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
  registerMetric(metric: unknown): void
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
   * Units one request costs: a finite number >= 0, or a function of the validated request
   * (sync or async) returning one, charged after parsing and validation. A cost of 0 is a
   * free request (an empty batch): admitted, charged nothing, still given the rate-limit
   * fields and `request.rateLimit`.
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
  /**
   * How long a request may be held until its slot instead of refused (see the plugin option).
   * @default the plugin's delay
   */
  delay?: number | string
  /**
   * Shadow mode on this route (see the plugin option).
   * @default the plugin's shadow
   */
  shadow?: boolean
}
