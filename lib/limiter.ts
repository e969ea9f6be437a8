/**
 * The limiter: resolves who is calling and in which tier, runs one store decision over
 * a request's policies (bounded by the store timeout), and reads the decision back into
 * a `RateLimitInfo`. Also the programmatic `fastify.rateLimiter`.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { Breaker } from './breaker.js'
import { DenyCache, localClockUs } from './deny-cache.js'
import {
  FST_GCRA_INVALID_COST, FST_GCRA_INVALID_KEY, FST_GCRA_INVALID_OPTION, FST_GCRA_INVALID_TIER,
  FST_GCRA_STORE_TIMEOUT, FST_GCRA_STORE_UNAVAILABLE, describeKind,
} from './errors.js'
import { MemoryStore } from './stores/memory.js'
import { incrementUs, nextUnitUs, remainingUnits, waitUs } from './gcra.js'
import { identityHasher, ipIdentity } from './identity.js'
import type { Limit, LimitSpec } from './limit.js'
import { normaliseLimits, type CostSetting, type MaybePromise, type NormalisedOptions, type StoreErrorPolicy } from './options.js'
import { buildPolicy, buildSet, exceedsCapacity, GLOBAL_SCOPE, namedScope, type Policy, type PolicySet } from './policy.js'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { assertValid, LimitsSchema } from './schemas.js'
import type { RateLimitStore, StoreReply } from './stores/store.js'
import type { ConsumeOptions, PolicyState, RateLimitInfo, RateLimiter, RateLimiterStats } from './types.js'

/** Everything one route (or one programmatic limit set) needs per request. */
export interface RoutePlan {
  /** 'POST /batch', for messages. */
  readonly label: string
  readonly cost: CostSetting
  /** The set for callers without a (known) tier: multiplier 1. */
  readonly base: PolicySet
  readonly tiers: ReadonlyMap<string, PolicySet>
  /** What this route's requests get while the store fails. */
  readonly onStoreError: StoreErrorPolicy
}

/**
 * A decision (from the store, the local deny cache, or the local fallback while the
 * store fails), or the store's error when the route's policy is 'allow' or 'deny'.
 */
export type Outcome =
  | { readonly reply: StoreReply, readonly degraded: boolean, readonly error?: undefined }
  | { readonly reply: undefined, readonly degraded: true, readonly error: unknown }

/** Watches the calls to a remote store (the metrics); the memory store answers synchronously and is not watched. */
export interface StoreObserver {
  /** A call was sent; `answer` settles with its reply, or its error or timeout. Returns `answer`. */
  storeCall<T> (answer: Promise<T>): Promise<T>
}

export function isThenable<T> (value: MaybePromise<T> | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | null)?.then === 'function'
}

const checkLimits = TypeCompiler.Compile(LimitsSchema)
// garbage tier names must not grow memory: past this many, unknown tiers are no longer remembered
const MAX_UNKNOWN_TIERS = 1000
// programmatic limit sets kept ready (dynamic scopes such as `room-${id}` must not grow memory)
const MAX_PROGRAMMATIC_PLANS = 1000
// the identity of requests without a client address (a unix socket without trustProxy)
const NO_ADDRESS = 'fastify-gcra:no-client-address'

export class Limiter {
  readonly store: RateLimitStore
  readonly #opts: NormalisedOptions
  readonly #log: FastifyBaseLogger
  /** Policy ids of the routes and global limits: what reset() forgets, with the cached programmatic ones. */
  readonly #routePolicyIds = new Set<string>()
  readonly #scopes = new Map<string, string>()
  readonly #unknownTiers = new Set<string>()
  readonly #programmatic = new Map<string, RoutePlan>()
  #warnedNoAddress = false
  readonly #hash: (identity: string) => string
  // a remote store gets breakers (one per server: per Cluster node) and a deny cache;
  // the memory store needs neither
  readonly #remote: boolean
  readonly #breakers = new Map<string, Breaker>()
  readonly #denyCache: DenyCache | undefined
  /**
   * The in-memory GCRA of 'local'. Kept from one outage to the next: its TATs record
   * admissions the store never saw, so a flapping store cannot start it afresh each time.
   */
  #fallback: MemoryStore | undefined
  /** Set by the metrics, before the first request. */
  observer: StoreObserver | undefined

  constructor (options: NormalisedOptions, store: RateLimitStore, log: FastifyBaseLogger) {
    this.#opts = options
    this.store = store
    this.#log = log
    this.#hash = identityHasher(options.keySecret)
    this.#remote = options.store.kind !== 'memory'
    this.#denyCache = this.#remote ? new DenyCache() : undefined
    // a store that (re)connects may hold other data than the refusals remembered from it
    if (this.#denyCache !== undefined) store.onReconnect?.(() => this.#denyCache!.clear())
  }

  /** The breaker of the server (Cluster node) that holds a caller's keys; none for the memory store. */
  #breakerFor (hashedKey: string): { shard: string, breaker: Breaker } | undefined {
    if (!this.#remote) return undefined
    const shard = this.store.shardOf?.(hashedKey) ?? ''
    let breaker = this.#breakers.get(shard)
    if (breaker === undefined) this.#breakers.set(shard, breaker = new Breaker())
    return { shard, breaker }
  }

  /**
   * Build the policy sets of one route or scope for every tier. Routes sharing a named
   * scope must declare the same limits, or they would not share their buckets.
   */
  plan (label: string, scopeId: string, limits: readonly Limit[], routeTiers: ReadonlyMap<string, readonly Limit[]>, cost: CostSetting, withGlobal: boolean, where: string, programmatic = false, onStoreError: StoreErrorPolicy = this.#opts.onStoreError): RoutePlan {
    const signature = JSON.stringify([limits, [...routeTiers]])
    const known = programmatic ? undefined : this.#scopes.get(scopeId)
    if (known !== undefined && known !== signature) {
      throw new FST_GCRA_INVALID_OPTION(where, `the same limits and tier limits as the other routes of scope '${scopeId.replace(/^\w+:/, '')}'`, 'different ones')
    }
    const fixed = typeof cost === 'number' ? cost : undefined
    const global = withGlobal ? this.#opts.global : []
    const make = (own: readonly Limit[], ownMultiplier: number, globalMultiplier: number): PolicySet => {
      const policies: Policy[] = [
        ...own.map(l => buildPolicy(l, ownMultiplier, scopeId)),
        ...global.map(l => buildPolicy(l, globalMultiplier, GLOBAL_SCOPE)),
      ]
      if (policies.length === 0) {
        throw new FST_GCRA_INVALID_OPTION(where, 'at least one limit: the route\'s own, the plugin\'s limits or global', 'none')
      }
      const names = new Set<string>()
      for (const p of policies) {
        if (names.has(p.name)) throw new FST_GCRA_INVALID_OPTION(where, 'limit names distinct from the global limits\' names', `'${p.name}' twice`)
        names.add(p.name)
      }
      return buildSet(policies, fixed)
    }
    const tiers = new Map<string, PolicySet>()
    for (const [name, multiplier] of this.#opts.tiers) {
      const override = routeTiers.get(name)
      tiers.set(name, override === undefined ? make(limits, multiplier, multiplier) : make(override, 1, multiplier))
    }
    const base = make(limits, 1, 1)
    if (!programmatic) {
      this.#scopes.set(scopeId, signature)
      for (const set of [base, ...tiers.values()]) for (const p of set.policies) this.#routePolicyIds.add(p.id)
    }
    return { label, cost, base, tiers, onStoreError }
  }

  /** The hashed identity of the caller. */
  resolveKey (request: FastifyRequest): MaybePromise<string> {
    const resolver = this.#opts.key
    if (resolver === undefined) {
      if (request.rateLimitKey !== null) return this.#hashKey(request.rateLimitKey)
      if (typeof request.ip === 'string') return this.#hash(ipIdentity(request.ip))
      if (!this.#warnedNoAddress) {
        this.#warnedNoAddress = true
        this.#log.warn('fastify-gcra: a request has no client address (a unix socket? set Fastify\'s trustProxy, or a key resolver); such requests share one bucket')
      }
      return this.#hash(NO_ADDRESS)
    }
    const value = resolver(request)
    return isThenable(value) ? Promise.resolve(value).then(v => this.#hashKey(v)) : this.#hashKey(value)
  }

  /** The hash of what a key resolver returned (or an auth hook set). */
  #hashKey (value: unknown): string {
    if (typeof value === 'string') return this.#hash(value)
    if (typeof value === 'number' && Number.isFinite(value)) return this.#hash(String(value))
    // a repeated header, as Node types it: the same identity as Node's own ', ' join
    if (Array.isArray(value) && value.length > 0 && value.every(v => typeof v === 'string')) return this.#hash(value.join(', '))
    throw new FST_GCRA_INVALID_KEY(describeKind(value))
  }

  /** The caller's tier name, or null. */
  resolveTier (request: FastifyRequest): MaybePromise<string | null> {
    const resolver = this.#opts.tier
    const value = resolver === undefined ? request.rateLimitTier : resolver(request)
    return isThenable(value) ? Promise.resolve(value).then(tierName) : tierName(value)
  }

  /** The set for a tier. An unknown tier gets the base set (multiplier 1), with one warning per name. */
  setFor (plan: RoutePlan, tier: string | null): PolicySet {
    if (tier === null) return plan.base
    const set = plan.tiers.get(tier)
    if (set !== undefined) return set
    if (!this.#unknownTiers.has(tier) && this.#unknownTiers.size < MAX_UNKNOWN_TIERS) {
      this.#unknownTiers.add(tier)
      this.#log.warn({ tier: tier.slice(0, 64) }, 'fastify-gcra: the tier resolver returned a tier that is not in options.tiers; limiting it as a caller without a tier (multiplier 1)')
    }
    return plan.base
  }

  /**
   * One decision. For a remote store: answered from the local deny cache when a recent
   * refusal still holds; otherwise the store, bounded by `storeTimeoutMs` and skipped while
   * the circuit is open; when that fails, the route's `onStoreError` applies.
   */
  decide (hashedKey: string, set: PolicySet, incrementsUs: readonly number[], charge: boolean, onStoreError: StoreErrorPolicy, storeFailed = false): MaybePromise<Outcome> {
    // this request already met a failing store (its check before the body): one wait is enough
    if (storeFailed) return this.#fallBack(new FST_GCRA_STORE_UNAVAILABLE(), this.#keys(hashedKey, set), set, incrementsUs, charge, onStoreError)
    const denyCache = this.#denyCache
    if (denyCache !== undefined) {
      // a refused caller's flood is answered here, before any key is built
      const refused = denyCache.check(hashedKey, set.id, set.capacitiesUs, incrementsUs)
      if (refused !== undefined) return { reply: refused, degraded: false }
    }
    const keys = this.#keys(hashedKey, set)
    const guard = this.#breakerFor(hashedKey)
    const turn = guard === undefined ? 'call' : guard.breaker.allow()
    if (turn === false) return this.#fallBack(new FST_GCRA_STORE_UNAVAILABLE(), keys, set, incrementsUs, charge, onStoreError)
    const sentAtUs = denyCache === undefined ? 0 : localClockUs()
    let pending: MaybePromise<StoreReply>
    try {
      pending = this.store.decide(keys, set.capacitiesUs, incrementsUs, charge)
    } catch (error) {
      return this.#failed(error, guard, turn === 'probe', keys, set, incrementsUs, charge, onStoreError)
    }
    if (!isThenable(pending)) return { reply: pending, degraded: false }
    const answer = withTimeout(pending, this.#opts.storeTimeoutMs)
    return (this.observer === undefined ? answer : this.observer.storeCall(answer)).then(
      (reply): Outcome => {
        if (guard !== undefined && guard.breaker.success()) {
          this.#log.info(guard.shard === '' ? {} : { node: guard.shard }, 'fastify-gcra: the store answers again; limiting with it resumed')
          // what was refused before the outage may be gone from a store that lost its data
          denyCache?.clear()
        }
        if (!reply.allowed) denyCache?.remember(hashedKey, set.id, reply, sentAtUs)
        return { reply, degraded: false }
      },
      (error: unknown) => this.#failed(error, guard, turn === 'probe', keys, set, incrementsUs, charge, onStoreError),
    )
  }

  /** The store keys of one caller's buckets of a policy set. */
  #keys (hashedKey: string, set: PolicySet): string[] {
    const head = `${this.#opts.prefix}:{${hashedKey}}:`
    const policies = set.policies
    const keys = new Array<string>(policies.length)
    for (let i = 0; i < policies.length; i++) keys[i] = head + policies[i]!.id
    return keys
  }

  #failed (error: unknown, guard: { shard: string, breaker: Breaker } | undefined, probe: boolean, keys: string[], set: PolicySet, incrementsUs: readonly number[], charge: boolean, onStoreError: StoreErrorPolicy): Outcome {
    // logged once when the breaker opens, and once when it closes: not per request
    if (guard !== undefined && guard.breaker.failure(probe)) {
      this.#log.error({ err: error, ...(guard.shard === '' ? {} : { node: guard.shard }) }, 'fastify-gcra: the store failed; requests follow onStoreError (allow, deny or local) until it answers again')
    } else {
      this.#log.debug({ err: error }, 'fastify-gcra: a store call failed')
    }
    return this.#fallBack(error, keys, set, incrementsUs, charge, onStoreError)
  }

  #fallBack (error: unknown, keys: string[], set: PolicySet, incrementsUs: readonly number[], charge: boolean, onStoreError: StoreErrorPolicy): Outcome {
    if (onStoreError !== 'local') return { reply: undefined, degraded: true, error }
    this.#fallback ??= new MemoryStore()
    return { reply: this.#fallback.decide(keys, set.capacitiesUs, incrementsUs, charge), degraded: true }
  }

  /** Forget the local deny-cache entries of an identity (after a reset). */
  forget (hashedKey: string): void {
    this.#denyCache?.forget(hashedKey)
    if (this.#fallback !== undefined) this.#fallback.delete(this.keysOf(hashedKey))
  }

  /** The store keys of every bucket of an identity this app knows (routes, global, cached programmatic sets). */
  keysOf (hashedKey: string): string[] {
    const ids = new Set(this.#routePolicyIds)
    for (const plan of this.#programmatic.values()) {
      for (const set of [plan.base, ...plan.tiers.values()]) for (const p of set.policies) ids.add(p.id)
    }
    const head = `${this.#opts.prefix}:{${hashedKey}}:`
    return [...ids].map(id => head + id)
  }

  /** Each circuit breaker's state, by server: '' for one Redis, 'host:port' per Cluster node. */
  breakerStates (): Array<[string, Breaker['state']]> {
    return [...this.#breakers].map(([shard, breaker]) => [shard, breaker.state])
  }

  /** The programmatic API. */
  api (): RateLimiter {
    const run = async (key: string, limits: readonly LimitSpec[], cost: number, options: ConsumeOptions, charge: boolean): Promise<RateLimitInfo> => {
      if (typeof key !== 'string') throw new FST_GCRA_INVALID_KEY(describeKind(key))
      if (typeof cost !== 'number' || !Number.isFinite(cost) || cost <= 0) throw new FST_GCRA_INVALID_COST('rateLimiter.consume()', describeKind(cost))
      const tier = tierName(options.tier)
      const set = this.setFor(this.#programmaticPlan(limits, options), tier)
      const increments = charge ? set.policies.map(p => incrementUs(cost, p.intervalUs)) : set.unitIncrements
      if (exceedsCapacity(set, increments)) return neverFits(set, cost, tier)
      const outcome = await this.decide(this.#hash(key), set, increments, charge, this.#opts.onStoreError)
      if (outcome.reply === undefined) throw outcome.error
      return toInfo(set, outcome.reply, cost, increments, tier, outcome.degraded)
    }
    return Object.freeze({
      consume: (key: string, limits: readonly LimitSpec[], cost = 1, options: ConsumeOptions = {}) => run(key, limits, cost, options, true),
      peek: (key: string, limits: readonly LimitSpec[], options: ConsumeOptions = {}) => run(key, limits, 1, options, false),
      stats: (): RateLimiterStats => {
        const memory = this.store instanceof MemoryStore ? this.store : undefined
        return {
          storeKeys: memory?.size,
          evictedLive: memory?.evictedLive,
          denyCacheHits: this.#denyCache?.hits ?? 0,
          openBreakers: [...this.#breakers.values()].filter(b => b.state !== 'closed').length,
        }
      },
      reset: async (key: string): Promise<void> => {
        if (typeof key !== 'string') throw new FST_GCRA_INVALID_KEY(describeKind(key))
        const hashed = this.#hash(key)
        // a refusal in flight now was decided before the delete: forget() makes the deny
        // cache ignore every refusal sent before this moment, whenever it arrives
        this.forget(hashed)
        const deleted = this.store.delete(this.keysOf(hashed))
        if (isThenable(deleted)) await withTimeout(deleted, this.#opts.storeTimeoutMs)
      },
    })
  }

  #programmaticPlan (limits: readonly LimitSpec[], options: ConsumeOptions): RoutePlan {
    const scope = options.scope ?? 'default'
    const withGlobal = options.global === true
    const id = `${scope}\n${withGlobal}\n${JSON.stringify(limits)}`
    let plan = this.#programmatic.get(id)
    if (plan === undefined) {
      assertValid(checkLimits, limits, 'rateLimiter limits')
      const normalised = normaliseLimits(limits, 'rateLimiter limits')
      // limits with other names are other buckets, so one scope may carry several sets
      plan = this.plan(`scope ${scope}`, namedScope(scope), normalised, new Map(), 1, withGlobal, `rateLimiter scope '${scope}'`, true)
      if (this.#programmatic.size >= MAX_PROGRAMMATIC_PLANS) this.#programmatic.delete(this.#programmatic.keys().next().value as string)
      this.#programmatic.set(id, plan)
    }
    return plan
  }
}

function tierName (value: unknown): string | null {
  if (value === null || value === undefined) return null
  if (typeof value === 'string') return value
  throw new FST_GCRA_INVALID_TIER(describeKind(value))
}

function withTimeout<T> (promise: PromiseLike<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new FST_GCRA_STORE_TIMEOUT(ms)), ms)
    promise.then(
      value => { clearTimeout(timer); resolve(value) },
      (error: unknown) => { clearTimeout(timer); reject(error) },
    )
  })
}

const ms = (us: number): number => Math.ceil(us / 1000)

/** Read a store's decision back into the request's view of it. */
export function toInfo (set: PolicySet, reply: StoreReply, cost: number, incrementsUs: readonly number[], tier: string | null, degraded = false): RateLimitInfo {
  const now = reply.nowUs
  const policies = new Array<PolicyState>(set.policies.length)
  let remaining = Infinity
  let resetMs = 0
  let retryAfterMs = 0
  for (let i = 0; i < policies.length; i++) {
    const p = set.policies[i]!
    const tat = reply.tatsUs[i]!
    const left = remainingUnits(tat, now, p)
    const reset = ms(nextUnitUs(tat, now, p))
    const wait = reply.allowed ? 0 : Math.max(0, ms(waitUs(tat, now, incrementsUs[i]!, p)))
    policies[i] = { name: p.name, quota: p.quota, burst: p.burst, windowMs: p.windowMs, remaining: left, resetMs: reset, retryAfterMs: wait }
    if (left < remaining || (left === remaining && reset > resetMs)) {
      remaining = left
      resetMs = reset
    }
    if (wait > retryAfterMs) retryAfterMs = wait
  }
  return { allowed: reply.allowed, remaining: remaining === Infinity ? 0 : remaining, resetMs, retryAfterMs, cost, tier, maxCost: set.maxCost, policies, degraded }
}

/** The answer for a cost that no wait can make fit. */
export function neverFits (set: PolicySet, cost: number, tier: string | null): RateLimitInfo {
  const policies = set.policies.map(p => ({
    name: p.name, quota: p.quota, burst: p.burst, windowMs: p.windowMs, remaining: 0, resetMs: 0,
    retryAfterMs: incrementUs(cost, p.intervalUs) > p.capacityUs ? Infinity : 0,
  }))
  return { allowed: false, remaining: 0, resetMs: 0, retryAfterMs: Infinity, cost, tier, maxCost: set.maxCost, policies, degraded: false }
}
