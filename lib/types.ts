/**
 * Public types and the declaration merging that makes `config.rateLimit`,
 * `request.rateLimit` and `fastify.rateLimiter` typed for Fastify users.
 */
import type { LimitSpec } from './limits/limit.js'
import type { RouteRateLimitConfig } from './options/types.js'

/** One policy (limit) as it applied to a request. */
export interface PolicyState {
  /** The policy's name, as in `RateLimit-Policy`. */
  readonly name: string
  /** Units per window for this caller's tier: max · multiplier (`RateLimit-Policy` advertises the capacity as `q`, see docs/limits.md). */
  readonly quota: number
  /** Units a full bucket can spend at once: burst · multiplier. */
  readonly burst: number
  /** The window, in ms (draft-10 `w`, in seconds). */
  readonly windowMs: number
  /** Whole units still available after the decision. */
  readonly remaining: number
  /** ms until this bucket holds one more unit; 0 when it is full. */
  readonly resetMs: number
  /** ms until this request's cost would fit this bucket; 0 when it fits. */
  readonly retryAfterMs: number
}

/** The decision for one request, as `request.rateLimit` and as the programmatic API returns it. */
export interface RateLimitInfo {
  /** Whether every policy admitted the request (and it was charged). */
  readonly allowed: boolean
  /** Whole units left in the most restrictive policy. */
  readonly remaining: number
  /** ms until the most restrictive policy holds one more unit. */
  readonly resetMs: number
  /** 0 when allowed; else ms until this cost fits every policy (Infinity when it never can: a 413). */
  readonly retryAfterMs: number
  /** The units this request costs. */
  readonly cost: number
  /** The caller's tier name, or null. */
  readonly tier: string | null
  /** The largest cost this caller's tier admits on this route (the smallest burst). */
  readonly maxCost: number
  /** Every policy that applied, route limits first, then global ones. */
  readonly policies: readonly PolicyState[]
  /**
   * Decided by this process alone while the store was failing (`onStoreError: 'local'`):
   * true for this instance, not for the whole deployment.
   */
  readonly degraded: boolean
  /**
   * ms this request was held until its slot (the route's `delay`); 0 when served at once.
   * In shadow mode, the hold enforcement would have applied (the request is not held).
   */
  readonly delayedMs: number
  /** Decided in shadow mode: reported as if enforced, and served whatever `allowed` says. */
  readonly shadow: boolean
}

/** What a 429 body builder receives. */
export interface RateLimitContext extends RateLimitInfo {
  /** The policies that refused the request. */
  readonly violated: readonly PolicyState[]
  /** The `Retry-After` value sent, in seconds. */
  readonly retryAfterSeconds: number
  /**
   * Refused in `onRequest` before the body was read (a route whose cost is a function):
   * the bucket holds less than one unit; `cost` is that unit, not the request's own cost.
   */
  readonly beforeBody: boolean
  /** What refused it: a rate limit, or the caller's requests in flight (`concurrency`). */
  readonly kind: 'rate' | 'concurrency'
}

export interface ConsumeOptions {
  /**
   * The bucket's scope; the same scope and limit names as a route share that route's buckets.
   * @default 'default'
   */
  scope?: string
  /**
   * The caller's tier name (multiplies max and burst).
   * @default null
   */
  tier?: string | null
  /**
   * Check the plugin's `global` limits too, in the same buckets as HTTP requests.
   * @default false
   */
  global?: boolean
}

/** Counters of the limiter, for dashboards and alerts. */
export interface RateLimiterStats {
  /** Buckets held by the memory store (undefined with Redis). */
  readonly storeKeys: number | undefined
  /** Live buckets the memory store evicted because it was full: each lost a caller's state (undefined with Redis). */
  readonly evictedLive: number | undefined
  /** Requests refused by the local deny cache without a store call. */
  readonly denyCacheHits: number
  /** Circuit breakers open or probing now (one per Redis server or Cluster node). */
  readonly openBreakers: number
  /** Concurrency slots held: all of them in the memory store; this instance's requests' with Redis. */
  readonly slotsHeld: number
}

/** `reply.rateLimit` on a limited route: reconcile the estimated cost with the actual one. */
export interface RateLimitSettlement {
  /** The cost charged for this request (the estimate); 0 when nothing was charged. */
  readonly charged: number
  /** Whether `settle` has run (by the handler or the route's `settle` option). */
  readonly settled: boolean
  /**
   * Settle the charge at `actual` units (a finite number >= 0): the difference is refunded
   * or charged, atomically over every limit of the request. Resolves to the state after
   * the change, or null when nothing was charged, nothing changed or the store failed
   * (logged; the estimate then stands). Never rejects; throws at once for a bad `actual`
   * or a second call.
   */
  settle(actual: number): Promise<RateLimitInfo | null>
}

/** `fastify.rateLimiter`: the limiter outside HTTP (websockets, queues, admin tools, tests). */
export interface RateLimiter {
  /** Charge `cost` units (a finite number >= 0; 0 reads the state and charges nothing) to `key` against every limit, atomically; nothing is charged when refused. */
  consume(key: string, limits: readonly LimitSpec[], cost?: number, options?: ConsumeOptions): Promise<RateLimitInfo>
  /** The state of `key`'s buckets without charging; `allowed` says whether a cost of 1 would fit. */
  peek(key: string, limits: readonly LimitSpec[], options?: ConsumeOptions): Promise<RateLimitInfo>
  /** Forget every bucket of `key` (all routes, scopes and global limits this app knows). */
  reset(key: string): Promise<void>
  /** Counters: memory store size and live evictions, deny-cache hits, open breakers, slots held. */
  stats(): RateLimiterStats
  /**
   * Scale admitted rates (max and burst) by `factor` in (0, 1]: of every route, or of one
   * route (`'POST /predict'`) or named scope. Multiplies with the `scale` options; 1 undoes it.
   */
  setScale(factor: number, target?: string): void
  /** The factor set by `setScale` for every route, or for one route or scope. */
  getScale(target?: string): number
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** fastify-gcra: `false` exempts the route; an object sets its limits, cost, scope and tier limits. */
    rateLimit?: RouteRateLimitConfig
  }
  interface FastifyRequest {
    /** fastify-gcra: the decision for this request; null on routes that are not limited. */
    rateLimit: RateLimitInfo | null
    /** fastify-gcra: set by an auth hook to the verified caller's identity. */
    rateLimitKey: string | null
    /** fastify-gcra: set by an auth hook to the verified caller's tier name. */
    rateLimitTier: string | null
  }
  interface FastifyReply {
    /** fastify-gcra: settle the request's charge after the fact; null on routes that are not limited. */
    readonly rateLimit: RateLimitSettlement | null
  }
  interface FastifyInstance {
    /** fastify-gcra: consume, peek and reset buckets outside HTTP. */
    rateLimiter: RateLimiter
  }
}
