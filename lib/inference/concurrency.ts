/**
 * Concurrency slots: requests in flight per caller on a route, and on the route for
 * everyone. Taken before any rate charge, given back once when the response closes. In a
 * remote store each slot is leased and renewed while its request runs, so a crashed
 * instance's slots end with their lease.
 */
import { randomBytes } from 'node:crypto'
import type { Decider } from '../decision/decide.js'
import type { StoreGuard } from '../decision/guard.js'
import type { ConcurrencyPlan } from '../limits/plan.js'
import type { StoreErrorPolicy } from '../options/types.js'
import type { RateLimitStore, SlotReply, SlotStore } from '../stores/contract.js'
import { andThen, type MaybePromise } from '../util/maybe.js'

/** Slots a request holds, given back once. */
export class HeldSlots {
  /** The store that holds them: the shared one, or this process's while it fails. */
  store: SlotStore
  readonly keys: string[] = []
  readonly token: string
  /** Slots per caller for this request's tier (0: none), and how many remained after it took one. */
  limit = 0
  remaining = 0
  released = false
  /** The store failed a slot call of this request (its rate decision then waits for it no more). */
  storeFailed = false
  constructor (store: SlotStore, token: string) {
    this.store = store
    this.token = token
  }
}

/** The answer to a request for slots. */
export type SlotOutcome =
  | { readonly held: HeldSlots | undefined, readonly refused?: undefined, readonly storeFailed: boolean }
  | { readonly held?: undefined, readonly refused: 'caller' | 'route' | 'store', readonly limit: number }

const RELEASE_FAILED = 'fastify-gcra: a concurrency slot could not be released; its lease ends it'

export class Slots {
  readonly #store: RateLimitStore
  readonly #guard: StoreGuard
  readonly #decider: Decider
  readonly #leaseMs: number
  /** Slots held in a remote store, renewed while their requests are in flight. */
  readonly #held = new Set<HeldSlots>()
  #renewal: NodeJS.Timeout | undefined
  readonly #tokenHead = randomBytes(6).toString('hex')
  #tokens = 0

  constructor (decider: Decider, leaseMs: number) {
    this.#store = decider.store
    this.#guard = decider.guard
    this.#decider = decider
    this.#leaseMs = leaseMs
  }

  /** Slots held now: all of them in the memory store; this instance's requests' in a remote one. */
  get held (): number {
    return this.#store.remote ? this.#held.size : this.#store.slotsHeld
  }

  /** Per-caller slots of a tier on a route (undefined: no per-caller limit). */
  perCaller (plan: ConcurrencyPlan, tier: string | null): number | undefined {
    if (tier === null) return plan.perCaller
    return plan.tiers.get(tier) ?? plan.perCaller
  }

  /**
   * Take a request's slots: the caller's on this route, then the route's. A refusal by
   * the route gives the caller's slot back; nothing else is charged.
   */
  acquire (hashedKey: string, plan: ConcurrencyPlan, tier: string | null, onStoreError: StoreErrorPolicy): MaybePromise<SlotOutcome> {
    const perCaller = this.perCaller(plan, tier)
    const held = new HeldSlots(this.#store, `${this.#tokenHead}:${(this.#tokens++).toString(36)}`)
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
    const callerKey = `${this.#decider.keyHead(hashedKey)}${plan.id}:slots`
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
      const fallback = this.#decider.fallback()
      // a request holds all its slots in one store: not half in each
      if (held.keys.length > 0 && held.store !== fallback) return 'store'
      held.store = fallback
      const reply = fallback.acquire(key, limit, held.token)
      if (reply.acquired) held.keys.push(key)
      return reply
    }
    if (held.store !== this.#store) return local()
    const hashTag = key.slice(key.indexOf('{') + 1, key.indexOf('}'))
    const store = this.#store
    return this.#guard.call(hashTag, () => store.acquire(key, limit, held.token, this.#leaseMs), (reply: SlotReply): SlotReply | 'store' => {
      if (reply.acquired) held.keys.push(key)
      return reply
    }, () => {
      held.storeFailed = true
      // a call that timed out may still take the slot in the store: take it back (ZREM by
      // token is idempotent, and runs after the acquire on the same connection)
      this.#guard.background(() => store.release(key, held.token), 'debug', RELEASE_FAILED)
      return local()
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
    if (held.store === this.#store && this.#store.remote) {
      this.#held.add(held)
      if (this.#renewal === undefined) {
        this.#renewal = setInterval(() => this.#renew(), Math.floor(this.#leaseMs / 3))
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
    this.#guard.background(() => this.#store.renew(keys, tokens, this.#leaseMs), 'warn', 'fastify-gcra: could not renew the leases of concurrency slots; each ends after concurrencyLeaseMs unless renewed')
  }

  /** Give a request's slots back, once. A release that fails ends with the slot's lease. */
  release (held: HeldSlots | undefined): void {
    if (held === undefined || held.released) return
    held.released = true
    this.#held.delete(held)
    for (const key of held.keys) this.#guard.background(() => held.store.release(key, held.token), 'debug', RELEASE_FAILED)
  }

  /** Stop renewing slot leases (the app is closing). */
  stop (): void {
    clearInterval(this.#renewal)
    this.#renewal = undefined
  }
}
