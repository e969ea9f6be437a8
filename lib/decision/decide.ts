/**
 * One decision over a request's buckets, in the order a request meets them: the local
 * deny cache (a remote store's known refusals, answered with no call), then the guarded
 * store call, then — when that fails — the route's `onStoreError`: this process's own
 * GCRA ('local'), or no decision ('allow', 'deny').
 */
import type { FastifyBaseLogger } from 'fastify'
import { FST_GCRA_STORE_UNAVAILABLE } from '../errors.js'
import type { Caller } from '../identity/caller.js'
import { flat } from '../identity/hash.js'
import type { PolicySet } from '../limits/policy.js'
import type { StoreErrorPolicy } from '../options/types.js'
import type { RateLimitStore, StoreReply } from '../stores/contract.js'
import { MemoryStore } from '../stores/memory.js'
import type { MaybePromise } from '../util/maybe.js'
import { DenyCache, localClockUs } from './deny-cache.js'
import type { StoreGuard } from './guard.js'

/**
 * A decision (from the store, the deny cache, or this process while the store fails), or
 * the store's error when the route's policy is 'allow' or 'deny'.
 */
export type StoreDecision =
  | { readonly reply: StoreReply, readonly degraded: boolean, readonly error?: undefined }
  | { readonly reply: undefined, readonly degraded: true, readonly error: unknown }

export interface DecideOptions {
  /** false: only check (write nothing), as the early check of a body-cost route does. */
  readonly charge: boolean
  readonly onStoreError: StoreErrorPolicy
  /** This request met a failing store already (its check before the body): one wait is enough. */
  readonly storeFailed?: boolean
  /** µs past its capacity a request may be admitted and held (`delay`); default 0. */
  readonly delayUs?: number
}

// capacities with a delay added, per policy set and delay (a route has one delay)
const delayed = new WeakMap<PolicySet, Map<number, readonly number[]>>()

/** What a decision compares with: each bucket's capacity D plus the delay (GCRA admits iff new − now ≤ D + delay). */
function capacitiesWithDelay (set: PolicySet, delayUs: number): readonly number[] {
  if (delayUs === 0) return set.capacitiesUs
  let byDelay = delayed.get(set)
  if (byDelay === undefined) delayed.set(set, byDelay = new Map())
  let caps = byDelay.get(delayUs)
  if (caps === undefined) byDelay.set(delayUs, caps = set.capacitiesUs.map(d => d + delayUs))
  return caps
}

/** µs an admitted charge waits for its slot: the most any bucket's new TAT is past now + D. */
export function holdUs (set: PolicySet, reply: StoreReply): number {
  let hold = 0
  const caps = set.capacitiesUs
  for (let i = 0; i < caps.length; i++) {
    const past = reply.tatsUs[i]! - reply.nowUs - caps[i]!
    if (past > hold) hold = past
  }
  return hold
}

const same = (decision: StoreDecision): StoreDecision => decision

/** Every increment 0: a free request. */
function isFree (incrementsUs: readonly number[]): boolean {
  for (let i = 0; i < incrementsUs.length; i++) if (incrementsUs[i] !== 0) return false
  return true
}

export class Decider {
  readonly store: RateLimitStore
  readonly guard: StoreGuard
  readonly #prefix: string
  readonly #log: FastifyBaseLogger
  /** Known refusals of a remote store; none for the memory store. */
  readonly denyCache: DenyCache | undefined
  /**
   * The in-memory GCRA of 'local'. Kept from one outage to the next: its TATs record
   * admissions the store never saw, so a flapping store cannot start it afresh each time.
   */
  #fallback: MemoryStore | undefined
  /**
   * The longest delay of the app's routes (µs): a bucket may hold charges that far past its
   * capacity, and every decision and settle reads them as they are.
   */
  #reachUs = 0

  constructor (store: RateLimitStore, guard: StoreGuard, prefix: string, log: FastifyBaseLogger) {
    this.store = store
    this.guard = guard
    this.#prefix = prefix
    this.#log = log
    if (store.remote) {
      const denyCache = new DenyCache()
      this.denyCache = denyCache
      // refusals are remembered only while refunds from other instances can be heard (listen)
      denyCache.active = false
      // a store that (re)connects or recovers may hold other data than the refusals remembered from it
      store.onReconnect(() => denyCache.clear())
      guard.onRecovered = () => denyCache.clear()
    }
  }

  get reachUs (): number {
    return this.#reachUs
  }

  /** A route with this delay is limited: buckets may now stand that far past their capacity. */
  reach (delayUs: number): void {
    if (delayUs > this.#reachUs) this.#reachUs = delayUs
  }

  /** The head of every store key of one caller: the prefix and the caller's hash tag. */
  keyHead (hashedKey: string): string {
    return `${this.#prefix}:{${hashedKey}}:`
  }

  /**
   * The store keys of one caller's buckets of a policy set: flat strings, which a memory
   * store keeps as they are, so that a known caller's next request finds its bucket by the
   * same string (no character compared).
   */
  readonly keys = (hashedKey: string, set: PolicySet): string[] => {
    const head = this.keyHead(hashedKey)
    const policies = set.policies
    const keys = new Array<string>(policies.length)
    for (let i = 0; i < policies.length; i++) keys[i] = flat(head + policies[i]!.id)
    return keys
  }

  decide (who: string | Caller, set: PolicySet, incrementsUs: readonly number[], how: DecideOptions): MaybePromise<StoreDecision> {
    return this.decideThen(who, set, incrementsUs, how, same)
  }

  /**
   * `next(decision)`: at once when the decision needs no I/O (the memory store, the deny
   * cache, a failing store's fallback); else one promise, resolved with what `next`
   * returns, and no other per decision.
   */
  decideThen<R> (who: string | Caller, set: PolicySet, incrementsUs: readonly number[], how: DecideOptions, next: (decision: StoreDecision) => R): MaybePromise<R> {
    const { onStoreError } = how
    const hashedKey = typeof who === 'string' ? who : who.key
    // a free request (every increment 0) is a read: it fits even an empty bucket, nothing is
    // written (a store keeps no bucket that was never charged), and it must not drop a
    // refusal remembered for its caller
    const free = isFree(incrementsUs)
    const charge = how.charge && !free
    const delayUs = how.delayUs ?? 0
    const caps = capacitiesWithDelay(set, delayUs)
    const slack = this.#reachUs > delayUs ? this.#reachUs - delayUs : 0
    if (how.storeFailed === true) return next(this.#fallBack(new FST_GCRA_STORE_UNAVAILABLE(), this.#keysOf(who, set), caps, incrementsUs, charge, slack, onStoreError))
    const store = this.store
    if (!store.remote) {
      // the memory store answers at once: no guard (no breaker, no deadline), no closure
      let reply: StoreReply
      // a known caller's buckets come with what the store found for them last time
      const buckets = typeof who === 'string' ? undefined : who.bucketsOf(set, this.keys)
      const keys = buckets === undefined ? this.keys(who as string, set) : buckets.keys
      try {
        reply = store.decide(keys, caps, incrementsUs, charge, slack, buckets?.handles)
      } catch (error) {
        this.guard.localFailed(error)
        return next(this.#fallBack(error, keys, caps, incrementsUs, charge, slack, onStoreError))
      }
      return next({ reply, degraded: false })
    }
    const denyCache = this.denyCache
    if (denyCache !== undefined && !free) {
      // a refused caller's flood is answered here, before any key is built
      const refused = denyCache.check(hashedKey, set.id, caps, incrementsUs, slack)
      if (refused !== undefined) return next({ reply: refused, degraded: false })
    }
    const keys = this.#keysOf(who, set)
    const sentAtUs = denyCache === undefined ? 0 : localClockUs()
    const onValue = (reply: StoreReply): R => {
      if (!reply.allowed) denyCache?.remember(hashedKey, set.id, reply, sentAtUs)
      return next({ reply, degraded: false })
    }
    const onError = (error: unknown): R => next(this.#fallBack(error, keys, caps, incrementsUs, charge, slack, onStoreError))
    // a remote store bounds its own waits: no promise and no deadline per decision but the answer's
    return this.guard.ask(hashedKey, (resolve, reject) => { store.decideThen(keys, caps, incrementsUs, charge, slack, resolve, reject) }, onValue, onError)
  }

  /** A known caller's keys of a set, kept with it (none is built again); else built now. */
  #keysOf (who: string | Caller, set: PolicySet): readonly string[] {
    return typeof who === 'string' ? this.keys(who, set) : who.keysOf(set, this.keys)
  }

  #fallBack (error: unknown, keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean, slackUs: number, onStoreError: StoreErrorPolicy): StoreDecision {
    if (onStoreError !== 'local') return { reply: undefined, degraded: true, error }
    return { reply: this.fallback().decide(keys, capacitiesUs, incrementsUs, charge, slackUs), degraded: true }
  }

  /** This process's GCRA while the store fails ('local'). */
  fallback (): MemoryStore {
    return this.#fallback ??= new MemoryStore()
  }

  /** Forget what this process remembers of a caller: its deny-cache entries and local buckets (a reset). */
  forget (hashedKey: string, keys: readonly string[]): void {
    this.denyCache?.forget(hashedKey)
    this.#fallback?.delete(keys)
  }

  get #refundChannel (): string {
    return `${this.#prefix}:refunds`
  }

  /**
   * A refund may make room where a remembered refusal says there is none: forget the
   * caller here and, once `announce`, tell the other instances.
   */
  refunded (hashedKey: string, announce: boolean): void {
    this.denyCache?.forget(hashedKey)
    const store = this.store
    if (announce && store.remote) {
      this.guard.background(() => store.publishRefund(this.#refundChannel, hashedKey), 'debug', 'fastify-gcra: a refund could not be announced to other instances')
    }
  }

  /** Start hearing other instances' refunds; the deny cache works while this listens. Resolves once subscribed. */
  listen (): Promise<void> {
    const { denyCache, store } = this
    if (denyCache === undefined || !store.remote) return Promise.resolve()
    let warned = false
    return store.listenRefunds(
      this.#refundChannel,
      hashedKey => denyCache.forget(hashedKey),
      (listening) => { if (denyCache.active !== listening) denyCache.active = listening },
      (error) => {
        if (!warned) this.#log.warn({ err: error }, 'fastify-gcra: the connection that hears refunds failed; refusals are not remembered locally until it is back')
        warned = true
      },
    )
  }
}
