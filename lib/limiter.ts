/**
 * The limiter: resolves who is calling and in which tier, runs one store decision over
 * a request's policies (bounded by the store timeout), and reads the decision back into
 * a `RateLimitInfo`. Also the programmatic `fastify.rateLimiter`.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { Breaker } from './breaker.js'
import { DenyCache, localClockUs } from './deny-cache.js'
import {
  FST_GCRA_INVALID_COST, FST_GCRA_INVALID_KEY, FST_GCRA_INVALID_OPTION, FST_GCRA_INVALID_SCALE, FST_GCRA_INVALID_TIER,
  FST_GCRA_STORE_TIMEOUT, FST_GCRA_STORE_UNAVAILABLE, describeKind,
} from './errors.js'
import { MemoryStore } from './stores/memory.js'
import { incrementUs, nextUnitUs, remainingUnits, waitUs } from './gcra.js'
import { hashIdentity, identityHasher, ipIdentity } from './identity.js'
import type { Limit, LimitSpec } from './limit.js'
import {
  normaliseLimits, type ConcurrencySettings, type CostSetting, type MaybePromise, type NormalisedOptions,
  type ScaleFunction, type SettleFunction, type StoreErrorPolicy,
} from './options.js'
import { buildPolicy, buildSet, exceedsCapacity, GLOBAL_SCOPE, incrementsFor, namedScope, type Policy, type PolicySet } from './policy.js'
import { randomBytes } from 'node:crypto'
import { CONCURRENCY } from './response.js'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { assertValid, LimitsSchema } from './schemas.js'
import type { RateLimitStore, SlotReply, StoreReply } from './stores/store.js'
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
  /** The scope of the route's buckets (what `setScale` names). */
  readonly scopeId: string
  readonly concurrency: ConcurrencyPlan | undefined
  readonly settle: SettleFunction | undefined
  readonly scale: ScaleFunction | undefined
  /** The set of a tier at a scale below 1 (in hundredths), built once and kept. */
  scaled(tier: string | null, hundredths: number): PolicySet
}

/** A route's concurrency limits, ready for requests. */
export interface ConcurrencyPlan {
  /** Slots per caller without a (known) tier; undefined: only the route's capacity. */
  readonly perCaller: number | undefined
  /** Slots per caller of each configured tier. */
  readonly tiers: ReadonlyMap<string, number>
  /** Slots of the route for everyone. */
  readonly route: number | undefined
  /** Suffix of the caller slots' key; the route's key. */
  readonly id: string
  readonly routeKey: string
}

/** Slots a request holds, given back once. */
export class HeldSlots {
  store: RateLimitStore
  readonly keys: string[] = []
  readonly token: string
  /** Slots per caller for this request's tier (0: none), and how many remained after it took one. */
  limit = 0
  remaining = 0
  released = false
  /** The store failed a slot call of this request (its rate decision then waits for it no more). */
  storeFailed = false
  constructor (store: RateLimitStore, token: string) {
    this.store = store
    this.token = token
  }
}

/** The answer to a request for slots. */
export type SlotOutcome =
  | { readonly held: HeldSlots | undefined, readonly refused?: undefined, readonly storeFailed: boolean }
  | { readonly held?: undefined, readonly refused: 'caller' | 'route' | 'store', readonly limit: number }

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

/** `next(value)`, at once when `value` is not a promise: the memory store's path stays synchronous. */
export function andThen<T, R> (value: T | PromiseLike<T>, next: (value: T) => R | PromiseLike<R>): R | Promise<R> {
  return isThenable(value) ? Promise.resolve(value).then(next) : next(value as T) as R | Promise<R>
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
  /** Scale set by `setScale`: for every route, and per route or scope id. */
  #appScale = 1
  readonly #scopeScales = new Map<string, number>()
  /** Scope ids of the routes, by route label and by scope name (what `setScale` accepts). */
  readonly #scaleTargets = new Map<string, string>()
  readonly #invalidScales = new Set<string>()
  /** Under-pressure's check, once the plugin found it (and `pressureScale` is set). */
  #underPressure: (() => boolean) | undefined
  /** Slots held in a remote store, renewed while their requests are in flight. */
  readonly #held = new Set<HeldSlots>()
  #renewal: NodeJS.Timeout | undefined
  readonly #tokenHead = randomBytes(6).toString('hex')
  #tokens = 0
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
    // refusals are remembered only while refunds from other instances can be heard
    if (this.#denyCache !== undefined) this.#denyCache.active = store.listenRefunds === undefined
  }

  /** The channel on which instances sharing a store tell each other of refunds. */
  get #refundChannel (): string {
    return `${this.#opts.prefix}:refunds`
  }

  /**
   * Start hearing other instances' refunds (a remote store with a deny cache); the deny
   * cache works while this listens. Resolves once subscribed.
   */
  listen (): Promise<void> {
    const denyCache = this.#denyCache
    if (denyCache === undefined || this.store.listenRefunds === undefined) return Promise.resolve()
    let warned = false
    return this.store.listenRefunds(
      this.#refundChannel,
      hashedKey => denyCache.forget(hashedKey),
      (listening) => { if (denyCache.active !== listening) denyCache.active = listening },
      (error) => {
        if (!warned) this.#log.warn({ err: error }, 'fastify-gcra: the connection that hears refunds failed; refusals are not remembered locally until it is back')
        warned = true
      },
    )
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
  plan (label: string, scopeId: string, limits: readonly Limit[], routeTiers: ReadonlyMap<string, readonly Limit[]>, cost: CostSetting, withGlobal: boolean, where: string, programmatic = false, onStoreError: StoreErrorPolicy = this.#opts.onStoreError, extra: { concurrency?: ConcurrencySettings, settle?: SettleFunction, scale?: ScaleFunction } = {}): RoutePlan {
    const concurrency = extra.concurrency === undefined ? null : [extra.concurrency.perCaller, extra.concurrency.route, [...extra.concurrency.tiers]]
    const signature = JSON.stringify([limits, [...routeTiers], concurrency])
    const known = programmatic ? undefined : this.#scopes.get(scopeId)
    if (known !== undefined && known !== signature) {
      throw new FST_GCRA_INVALID_OPTION(where, `the same limits, tier limits and concurrency as the other routes of scope '${scopeId.replace(/^\w+:/, '')}'`, 'different ones')
    }
    const fixed = typeof cost === 'number' ? cost : undefined
    const global = withGlobal ? this.#opts.global : []
    const make = (own: readonly Limit[], ownMultiplier: number, globalMultiplier: number): PolicySet => {
      const policies: Policy[] = [
        ...own.map(l => buildPolicy(l, ownMultiplier, scopeId)),
        ...global.map(l => buildPolicy(l, globalMultiplier, GLOBAL_SCOPE)),
      ]
      if (policies.length === 0 && extra.concurrency === undefined) {
        throw new FST_GCRA_INVALID_OPTION(where, 'at least one limit: the route\'s own, the plugin\'s limits or global (or a concurrency limit)', 'none')
      }
      const names = new Set<string>()
      // the concurrency limit has its own item in the rate-limit fields
      if (extra.concurrency !== undefined) names.add(CONCURRENCY)
      for (const p of policies) {
        if (p.name === CONCURRENCY && extra.concurrency !== undefined) throw new FST_GCRA_INVALID_OPTION(where, `limit names other than '${CONCURRENCY}' on a route with a concurrency limit`, `'${CONCURRENCY}'`)
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
      this.#scaleTargets.set(label, scopeId)
      if (scopeId.startsWith('scope:')) this.#scaleTargets.set(scopeId.slice('scope:'.length), scopeId)
    }
    // sets at a lower scale: the tier's multiplier times the scale, built on first use
    const scaledSets = new Map<string, PolicySet>()
    const scaled = (tier: string | null, hundredths: number): PolicySet => {
      const known = tier !== null && this.#opts.tiers.has(tier) ? tier : null
      const id = `${known ?? ''}\n${hundredths}`
      let set = scaledSets.get(id)
      if (set === undefined) {
        const factor = hundredths / 100
        const multiplier = known === null ? 1 : this.#opts.tiers.get(known)!
        const override = known === null ? undefined : routeTiers.get(known)
        set = override === undefined ? make(limits, multiplier * factor, multiplier * factor) : make(override, factor, multiplier * factor)
        scaledSets.set(id, set)
      }
      return set
    }
    return {
      label, cost, base, tiers, onStoreError, scopeId, scaled,
      concurrency: extra.concurrency === undefined ? undefined : this.#concurrencyPlan(scopeId, extra.concurrency),
      settle: extra.settle,
      scale: extra.scale,
    }
  }

  #concurrencyPlan (scopeId: string, settings: ConcurrencySettings): ConcurrencyPlan {
    const tiers = new Map<string, number>()
    for (const [name, multiplier] of this.#opts.tiers) {
      const own = settings.tiers.get(name)
      if (own !== undefined) tiers.set(name, own)
      else if (settings.perCaller !== undefined) tiers.set(name, Math.max(1, Math.floor(settings.perCaller * multiplier)))
    }
    const id = hashIdentity(`${scopeId}\nconcurrency`).slice(0, 12)
    return Object.freeze({ perCaller: settings.perCaller, tiers, route: settings.route, id, routeKey: `${this.#opts.prefix}:{${id}}:route` })
  }

  /** The scale of a request's admitted rates, in hundredths (100: unscaled). */
  scaleOf (plan: RoutePlan, request: FastifyRequest): number {
    let factor = this.#appScale
    if (this.#scopeScales.size > 0) factor *= this.#scopeScales.get(plan.scopeId) ?? 1
    const opts = this.#opts
    if (opts.scale !== undefined) factor *= this.#checkScale(opts.scale(request), 'options.scale')
    if (plan.scale !== undefined) factor *= this.#checkScale(plan.scale(request), `the scale of ${plan.label}`)
    if (this.#underPressure !== undefined && this.#underPressure()) factor *= opts.pressureScale!
    if (factor >= 1) return 100
    return Math.max(1, Math.round(factor * 100))
  }

  /** Whether any scale can apply to this plan's requests (else `scaleOf` is always 100). */
  scaling (plan: RoutePlan): boolean {
    return this.#appScale !== 1 || this.#scopeScales.size > 0 || this.#opts.scale !== undefined || plan.scale !== undefined || this.#underPressure !== undefined
  }

  #checkScale (value: unknown, what: string): number {
    if (typeof value !== 'number' || Number.isNaN(value)) throw new FST_GCRA_INVALID_SCALE(what, describeKind(value))
    if (value > 0 && value <= 1) return value
    // out of range: kept in (0, 1], with one warning per source
    if (!this.#invalidScales.has(what)) {
      this.#invalidScales.add(what)
      this.#log.warn({ scale: value }, `fastify-gcra: ${what} returned a scale outside (0, 1]; using ${value > 1 ? 1 : 0.01}`)
    }
    return value > 1 ? 1 : 0.01
  }

  /** Apply `pressureScale` while `check` (under-pressure's `isUnderPressure`) says so. */
  usePressure (check: () => boolean): void {
    this.#underPressure = check
  }

  /** The set of a request: its tier's, at its scale (hundredths). */
  setAt (plan: RoutePlan, tier: string | null, hundredths: number): PolicySet {
    return hundredths === 100 ? this.setFor(plan, tier) : plan.scaled(tier, hundredths)
  }

  /** Per-caller slots of a tier on a route (undefined: no per-caller limit). */
  slotsFor (plan: ConcurrencyPlan, tier: string | null): number | undefined {
    if (tier === null) return plan.perCaller
    return plan.tiers.get(tier) ?? plan.perCaller
  }

  /**
   * Take a request's slots: the caller's on this route, then the route's. A refusal by
   * the route gives the caller's slot back; nothing else is charged.
   */
  acquire (hashedKey: string, plan: ConcurrencyPlan, tier: string | null, onStoreError: StoreErrorPolicy): MaybePromise<SlotOutcome> {
    const perCaller = this.slotsFor(plan, tier)
    const held = new HeldSlots(this.store, `${this.#tokenHead}:${(this.#tokens++).toString(36)}`)
    const routeStep = (): MaybePromise<SlotOutcome> => {
      if (plan.route === undefined) return this.#hold(held)
      return andThen(this.#slot(held, plan.routeKey, plan.route, onStoreError), (reply) => {
        if (reply === 'store') return this.#refuseOrAllow(held, onStoreError)
        if (!reply.acquired) {
          this.release(held)
          return { refused: 'route', limit: plan.route! }
        }
        return this.#hold(held)
      })
    }
    if (perCaller === undefined) return routeStep()
    held.limit = perCaller
    const callerKey = `${this.#opts.prefix}:{${hashedKey}}:${plan.id}:slots`
    return andThen(this.#slot(held, callerKey, perCaller, onStoreError), (reply) => {
      if (reply === 'store') return this.#refuseOrAllow(held, onStoreError)
      if (!reply.acquired) return { refused: 'caller', limit: perCaller }
      held.remaining = Math.max(0, perCaller - reply.inFlight)
      return routeStep()
    })
  }

  /** One slot, from the store or (while it fails, under 'local') from this process. */
  #slot (held: HeldSlots, key: string, limit: number, onStoreError: StoreErrorPolicy): MaybePromise<SlotReply | 'store'> {
    const local = (): SlotReply | 'store' => {
      if (onStoreError !== 'local') return 'store'
      const fallback = this.#fallbackStore()
      // a request holds all its slots in one store: not half in each
      if (held.keys.length > 0 && held.store !== fallback) return 'store'
      held.store = fallback
      const reply = fallback.acquire(key, limit, held.token)
      if (reply.acquired) held.keys.push(key)
      return reply
    }
    if (held.store !== this.store) return local()
    return andThen(this.#remoteCall(key, () => this.store.acquire(key, limit, held.token, this.#opts.concurrencyLeaseMs)), (reply) => {
      if (reply === undefined) {
        held.storeFailed = true
        // a call that timed out may still take the slot in the store: take it back (ZREM by
        // token is idempotent, and runs after the acquire on the same connection)
        this.#background(() => this.store.release(key, held.token), 'debug', 'fastify-gcra: a concurrency slot could not be released; its lease ends it')
        return local()
      }
      if (reply.acquired) held.keys.push(key)
      return reply
    })
  }

  /** The store failed a slot request: 'deny' refuses the request; otherwise it goes on with what it holds. */
  #refuseOrAllow (held: HeldSlots, onStoreError: StoreErrorPolicy): SlotOutcome {
    if (onStoreError === 'deny') {
      this.release(held)
      return { refused: 'store', limit: 0 }
    }
    return this.#hold(held)
  }

  #hold (held: HeldSlots): SlotOutcome {
    if (held.keys.length === 0) return { held: undefined, storeFailed: held.storeFailed }
    if (held.store === this.store && this.#remote) {
      this.#held.add(held)
      if (this.#renewal === undefined) {
        this.#renewal = setInterval(() => this.#renew(), Math.floor(this.#opts.concurrencyLeaseMs / 3))
        this.#renewal.unref()
      }
    }
    return { held, storeFailed: held.storeFailed }
  }

  #renew (): void {
    if (this.#held.size === 0) {
      clearInterval(this.#renewal)
      this.#renewal = undefined
      return
    }
    const keys: string[] = []
    const tokens: string[] = []
    for (const held of this.#held) {
      for (const key of held.keys) {
        keys.push(key)
        tokens.push(held.token)
      }
    }
    this.#background(() => this.store.renew(keys, tokens, this.#opts.concurrencyLeaseMs), 'warn', 'fastify-gcra: could not renew the leases of concurrency slots; each ends after concurrencyLeaseMs unless renewed')
  }

  /** Give a request's slots back, once. A release that fails ends with the slot's lease. */
  release (held: HeldSlots | undefined): void {
    if (held === undefined || held.released) return
    held.released = true
    this.#held.delete(held)
    for (const key of held.keys) {
      this.#background(() => held.store.release(key, held.token), 'debug', 'fastify-gcra: a concurrency slot could not be released; its lease ends it')
    }
  }

  /** A store call nobody waits for: bounded, and its failure logged, never unhandled. */
  #background (run: () => void | Promise<void>, level: 'warn' | 'debug', message: string): void {
    try {
      const pending = run()
      if (isThenable(pending)) withTimeout(pending, this.#opts.storeTimeoutMs * 10).catch((error: unknown) => { this.#log[level]({ err: error }, message) })
    } catch (error) {
      this.#log[level]({ err: error }, message)
    }
  }

  /** A store call other than a decision (see `#guarded`): its answer, or undefined when it failed. */
  #remoteCall<T> (key: string, run: () => MaybePromise<T>): MaybePromise<T | undefined> {
    return this.#guarded<T, T | undefined>(key.slice(key.indexOf('{') + 1, key.indexOf('}')), run, value => value, () => undefined)
  }

  /**
   * Settle a charge: move every bucket by the difference between the actual cost's
   * increments and the charged ones, atomically, in the store that charged. Undefined
   * when nothing changes or the store failed (then the charge stands).
   */
  settle (hashedKey: string, set: PolicySet, chargedUs: readonly number[], actual: number, local: boolean): MaybePromise<StoreReply | undefined> {
    const n = set.policies.length
    const deltas = new Array<number>(n)
    let change = false
    for (let i = 0; i < n; i++) {
      deltas[i] = (actual === 0 ? 0 : incrementUs(actual, set.policies[i]!.intervalUs)) - chargedUs[i]!
      if (deltas[i] !== 0) change = true
    }
    if (!change) return undefined
    const keys = this.#keys(hashedKey, set)
    const store = local ? this.#fallbackStore() : this.store
    const call = (): MaybePromise<StoreReply> => store.adjust(keys, set.capacitiesUs, deltas)
    const refund = deltas.some(d => d < 0)
    // a refund may make room where a remembered refusal says there is none: forget them
    // here before and after it (a call that times out may still be applied), and tell the
    // other instances
    if (refund && !local) this.#denyCache?.forget(hashedKey)
    return andThen(local ? call() : this.#remoteCall(keys[0]!, call), (reply) => {
      if (refund && !local) {
        this.#denyCache?.forget(hashedKey)
        const publish = this.store.publishRefund
        if (publish !== undefined) this.#background(() => publish.call(this.store, this.#refundChannel, hashedKey), 'debug', 'fastify-gcra: a refund could not be announced to other instances')
      }
      return reply
    })
  }

  #fallbackStore (): MemoryStore {
    return this.#fallback ??= new MemoryStore()
  }

  /** Stop renewing slot leases (the app is closing). */
  stop (): void {
    clearInterval(this.#renewal)
    this.#renewal = undefined
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
    const sentAtUs = denyCache === undefined ? 0 : localClockUs()
    return this.#guarded(
      hashedKey,
      () => this.store.decide(keys, set.capacitiesUs, incrementsUs, charge),
      (reply): Outcome => {
        if (!reply.allowed) denyCache?.remember(hashedKey, set.id, reply, sentAtUs)
        return { reply, degraded: false }
      },
      error => this.#fallBack(error, keys, set, incrementsUs, charge, onStoreError),
    )
  }

  /**
   * One store call, bounded by the timeout, skipped while the breaker of its server is
   * open (a remote store), timed by the metrics: `onValue` with its answer, or `onError`
   * with why there is none (logged once per outage when a breaker opens).
   */
  #guarded<T, R> (hashTag: string, run: () => MaybePromise<T>, onValue: (value: T) => R, onError: (error: unknown) => R): MaybePromise<R> {
    const guard = this.#breakerFor(hashTag)
    const turn = guard === undefined ? 'call' : guard.breaker.allow()
    if (turn === false) return onError(new FST_GCRA_STORE_UNAVAILABLE())
    let pending: MaybePromise<T>
    try {
      pending = run()
    } catch (error) {
      this.#logFailure(error, guard, turn === 'probe')
      return onError(error)
    }
    if (!isThenable(pending)) return onValue(pending)
    const answer = withTimeout(pending, this.#opts.storeTimeoutMs)
    return (this.observer === undefined ? answer : this.observer.storeCall(answer)).then(
      (value) => {
        if (guard !== undefined && guard.breaker.success()) this.#recovered(guard)
        return onValue(value)
      },
      (error: unknown) => {
        this.#logFailure(error, guard, turn === 'probe')
        return onError(error)
      },
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

  #logFailure (error: unknown, guard: { shard: string, breaker: Breaker } | undefined, probe: boolean): void {
    // logged once when the breaker opens, and once when it closes: not per request
    if (guard !== undefined && guard.breaker.failure(probe)) {
      this.#log.error({ err: error, ...(guard.shard === '' ? {} : { node: guard.shard }) }, 'fastify-gcra: the store failed; requests follow onStoreError (allow, deny or local) until it answers again')
    } else {
      this.#log.debug({ err: error }, 'fastify-gcra: a store call failed')
    }
  }

  #recovered (guard: { shard: string, breaker: Breaker }): void {
    this.#log.info(guard.shard === '' ? {} : { node: guard.shard }, 'fastify-gcra: the store answers again; limiting with it resumed')
    // what was refused before the outage may be gone from a store that lost its data
    this.#denyCache?.clear()
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
      const increments = charge ? incrementsFor(set.policies, cost) : set.unitIncrements
      if (exceedsCapacity(set, increments)) return neverFits(set, cost, tier)
      const outcome = await this.decide(this.#hash(key), set, increments, charge, this.#opts.onStoreError)
      if (outcome.reply === undefined) throw outcome.error
      return toInfo(set, outcome.reply, cost, increments, tier, outcome.degraded)
    }
    return Object.freeze({
      consume: (key: string, limits: readonly LimitSpec[], cost = 1, options: ConsumeOptions = {}) => run(key, limits, cost, options, true),
      peek: (key: string, limits: readonly LimitSpec[], options: ConsumeOptions = {}) => run(key, limits, 1, options, false),
      setScale: (factor: number, target?: string): void => {
        if (typeof factor !== 'number' || !(factor > 0 && factor <= 1)) throw new FST_GCRA_INVALID_OPTION('rateLimiter.setScale(factor)', 'a number in (0, 1]', describeKind(factor))
        if (target === undefined) {
          this.#appScale = factor
          return
        }
        const scopeId = this.#scaleTarget(target, 'rateLimiter.setScale(factor, target)')
        if (factor === 1) this.#scopeScales.delete(scopeId)
        else this.#scopeScales.set(scopeId, factor)
      },
      getScale: (target?: string): number => {
        if (target === undefined) return this.#appScale
        return this.#scopeScales.get(this.#scaleTarget(target, 'rateLimiter.getScale(target)')) ?? 1
      },
      stats: (): RateLimiterStats => {
        const memory = this.store instanceof MemoryStore ? this.store : undefined
        return {
          storeKeys: memory?.size,
          evictedLive: memory?.evictedLive,
          denyCacheHits: this.#denyCache?.hits ?? 0,
          openBreakers: [...this.#breakers.values()].filter(b => b.state !== 'closed').length,
          slotsHeld: memory !== undefined ? memory.slotsHeld : this.#held.size,
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

  /** The scope id a `setScale`/`getScale` target names (a route label or a scope name); throws for anything else. */
  #scaleTarget (target: unknown, where: string): string {
    const scopeId = typeof target === 'string' ? this.#scaleTargets.get(target) : undefined
    if (scopeId === undefined) throw new FST_GCRA_INVALID_OPTION(where, 'a limited route (\'POST /predict\') or a scope name', typeof target === 'string' ? `'${target.slice(0, 64)}'` : describeKind(target))
    return scopeId
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
