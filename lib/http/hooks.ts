/**
 * The route hooks: take concurrency slots and charge fixed costs in `onRequest`; for
 * costs computed from the body, turn away an empty bucket in `onRequest` and charge in
 * `preHandler`, after parsing and validation; give slots back when the response closes;
 * settle estimated costs after the handler.
 */
import type {
  FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler, onResponseHookHandler, preHandlerHookHandler,
} from 'fastify'
import { FST_GCRA_INVALID_COST, FST_GCRA_INVALID_SETTLE, describeKind } from './errors.js'
import { andThen, isThenable, toInfo, type HeldSlots, type Limiter, type Outcome, type RoutePlan, type SlotOutcome } from './limiter.js'
import type { RateLimitInfo, RateLimitSettlement } from './types.js'
import type { MaybePromise, NormalisedOptions } from './options.js'
import { exceedsCapacity, incrementsFor, type PolicySet } from './policy.js'
import {
  concurrencyInfo, sendCostTooLarge, sendReducedCapacity, sendRouteBusy, sendStoreUnavailable, sendTooManyRequests, setConcurrencyHeaders,
  setPolicyHeader, setRateLimitHeaders,
} from './response.js'

/** Where a request's resolved identity is kept between its hooks. */
export const kCaller = Symbol('fastify-gcra.caller')

/** One request's caller and what the limiter did for it. */
class Caller {
  readonly key: string
  readonly tier: string | null
  readonly limiter: Limiter
  readonly plan: RoutePlan
  /** The scale of admitted rates for this request, in hundredths. */
  readonly hundredths: number
  /** The store failed this request once already (the check before the body). */
  storeFailed = false
  /** Slots were asked for (once per request); those it holds. */
  slotsAsked = false
  slots: HeldSlots | undefined = undefined
  /** The response closed: slots that arrive later go straight back. */
  closed = false
  /** Answered before any rate decision: too many in flight (429), the route or scale at capacity (503), or the store (503). */
  refusal: 'concurrency' | 'capacity' | 'store' | null = null
  /** Let through by a route with only a concurrency limit (no rate decision to read back). */
  slotOnly = false
  /** What was charged, for `settle`: the set, its increments, the cost, and whether locally. */
  chargedSet: PolicySet | null = null
  chargedIncrements: readonly number[] = []
  chargedCost = 0
  chargedLocally = false
  settled = false
  settlement: Settlement | undefined = undefined

  constructor (key: string, tier: string | null, limiter: Limiter, plan: RoutePlan, hundredths: number) {
    this.key = key
    this.tier = tier
    this.limiter = limiter
    this.plan = plan
    this.hundredths = hundredths
  }
}

type WithCaller = FastifyRequest & { [kCaller]: Caller | null }

/** `reply.rateLimit`: settle a request's estimated charge at its actual cost. */
class Settlement implements RateLimitSettlement {
  readonly #caller: Caller
  readonly #request: FastifyRequest

  constructor (caller: Caller, request: FastifyRequest) {
    this.#caller = caller
    this.#request = request
  }

  get charged (): number {
    return this.#caller.chargedSet === null ? 0 : this.#caller.chargedCost
  }

  get settled (): boolean {
    return this.#caller.settled
  }

  settle (actual: number): Promise<RateLimitInfo | null> {
    const caller = this.#caller
    if (typeof actual !== 'number' || !Number.isFinite(actual) || actual < 0) {
      throw new FST_GCRA_INVALID_SETTLE(`expected a finite number >= 0, got ${describeKind(actual)}`)
    }
    if (caller.settled) throw new FST_GCRA_INVALID_SETTLE('this request was settled already')
    caller.settled = true
    const set = caller.chargedSet
    if (set === null) return Promise.resolve(null)
    let pending: ReturnType<Limiter['settle']>
    try {
      pending = caller.limiter.settle(caller.key, set, caller.chargedIncrements, actual, caller.chargedLocally)
    } catch (error) {
      this.#request.log.warn({ err: error }, 'fastify-gcra: could not settle the cost of a request; its estimate stands')
      return Promise.resolve(null)
    }
    return Promise.resolve(pending).then(
      (reply) => {
        if (reply === undefined) return null
        // request.rateLimit follows: what was charged in the end, and the state after it
        const info = toInfo(set, reply, actual, set.unitIncrements, caller.tier, caller.chargedLocally)
        this.#request.rateLimit = info
        return info
      },
      (error: unknown) => {
        this.#request.log.warn({ err: error }, 'fastify-gcra: could not settle the cost of a request; its estimate stands')
        return null
      },
    )
  }
}

/** `reply.rateLimit`: the request's settlement on a limited route, else null. */
export function settlementOf (reply: FastifyReply): RateLimitSettlement | null {
  const caller = (reply.request as WithCaller)[kCaller]
  if (caller === null || caller === undefined) return null
  return caller.settlement ??= new Settlement(caller, reply.request)
}

async function costOf (plan: RoutePlan, request: FastifyRequest): Promise<number> {
  let value: unknown
  try {
    value = (plan.cost as (r: FastifyRequest) => unknown)(request)
    if (isThenable(value)) value = await value
  } catch (error) {
    // the cause carries the detail; the logger prints its message after ours
    throw new FST_GCRA_INVALID_COST(plan.label, 'an exception', { cause: error })
  }
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new FST_GCRA_INVALID_COST(plan.label, describeKind(value))
  return value
}

/** A hook step's result: go on (true) or answered (false), now or later. */
type Step = boolean | Promise<boolean>

export function routeHooks (limiter: Limiter, options: NormalisedOptions, plan: RoutePlan): {
  onRequest?: onRequestHookHandler
  preHandler?: preHandlerHookHandler
  onResponse?: onResponseHookHandler
} {
  /** Fields for a decision: all of them from the store; while degraded, only what stays true. */
  const fields = (reply: FastifyReply, set: PolicySet, info: RateLimitInfo, caller: Caller): void => {
    if (info.degraded) setPolicyHeader(reply, options.headers, set)
    else setRateLimitHeaders(reply, options.headers, set, info)
    slotFields(reply, caller)
  }

  const slotFields = (reply: FastifyReply, caller: Caller): void => {
    const slots = caller.slots
    if (slots !== undefined && slots.limit > 0) setConcurrencyHeaders(reply, options.headers, slots.limit, slots.remaining)
  }

  const decide = (caller: Caller, set: PolicySet, increments: readonly number[], charge: boolean): MaybePromise<Outcome> =>
    limiter.decide(caller.key, set, increments, charge, plan.onStoreError, caller.storeFailed)

  /** Returns false when the request has been answered. `charge` false: the early check of a body-cost route. */
  function limit (request: FastifyRequest, reply: FastifyReply, charge: boolean): Step {
    const req = request as WithCaller
    const known = req[kCaller]
    if (known !== null) return withCaller(request, reply, charge, known)
    // one after the other: a second pending promise would reject unobserved if the first threw
    return andThen(limiter.resolveKey(request), key => andThen(limiter.resolveTier(request), (tier) => {
      const hundredths = limiter.scaling(plan) ? limiter.scaleOf(plan, request) : 100
      const caller = new Caller(key, tier, limiter, plan, hundredths)
      req[kCaller] = caller
      return withCaller(request, reply, charge, caller)
    }))
  }

  function withCaller (request: FastifyRequest, reply: FastifyReply, charge: boolean, caller: Caller): Step {
    if (plan.concurrency !== undefined && !caller.slotsAsked) {
      caller.slotsAsked = true
      // whatever ends the response (sent, aborted, timed out, an error) gives the slots back
      const raw = reply.raw
      raw.once('close', () => {
        caller.closed = true
        limiter.release(caller.slots)
      })
      // closed already (the client left during an earlier hook): 'close' will not come again
      if (raw.destroyed || raw.closed) {
        caller.closed = true
        return false
      }
      return andThen(limiter.acquire(caller.key, plan.concurrency, caller.tier, plan.onStoreError), (slots) => withSlots(request, reply, charge, caller, slots))
    }
    return rate(request, reply, charge, caller)
  }

  function withSlots (request: FastifyRequest, reply: FastifyReply, charge: boolean, caller: Caller, outcome: SlotOutcome): Step {
    if (outcome.refused === undefined) {
      caller.slots = outcome.held
      // the rate decision does not wait for a store that just failed
      if (outcome.storeFailed) caller.storeFailed = true
      // the response closed while the slots were being taken
      if (caller.closed) {
        limiter.release(outcome.held)
        return false
      }
      return rate(request, reply, charge, caller)
    }
    if (outcome.refused === 'store') {
      caller.refusal = 'store'
      caller.storeFailed = true
      sendStoreUnavailable(reply)
    } else if (outcome.refused === 'route') {
      caller.refusal = 'capacity'
      sendRouteBusy(reply, outcome.limit)
    } else {
      caller.refusal = 'concurrency'
      const info = concurrencyInfo(outcome.limit, caller.tier)
      request.rateLimit = info
      setConcurrencyHeaders(reply, options.headers, outcome.limit, 0)
      sendTooManyRequests(request, reply, options, info, !charge, 'concurrency')
    }
    return false
  }

  function rate (request: FastifyRequest, reply: FastifyReply, charge: boolean, caller: Caller): Step {
    const set = limiter.setAt(plan, caller.tier, caller.hundredths)
    if (set.policies.length === 0) {
      // a route with a concurrency limit only
      if (charge) {
        caller.slotOnly = true
        slotFields(reply, caller)
      }
      return true
    }
    if (!charge) {
      // a cost of 1 that can never fit is the charge's 413 to give, after the body is read
      if (exceedsCapacity(set, set.unitIncrements)) return true
      return withCost(request, reply, false, caller, set, 1, set.unitIncrements)
    }
    if (typeof plan.cost === 'number') {
      return withCost(request, reply, true, caller, set, plan.cost, set.fixedIncrements!)
    }
    return costOf(plan, request).then(cost => withCost(request, reply, true, caller, set, cost, incrementsFor(set.policies, cost)))
  }

  function withCost (request: FastifyRequest, reply: FastifyReply, charge: boolean, caller: Caller, set: PolicySet, cost: number, increments: readonly number[]): Step {
    if (exceedsCapacity(set, increments)) {
      // the largest cost the tier ever admits is the one at full scale
      const full = caller.hundredths < 100 ? limiter.setFor(plan, caller.tier) : set
      if (full !== set && !exceedsCapacity(full, incrementsFor(full.policies, cost))) {
        // it fits the route at full scale: the service admits less for now, the caller did nothing wrong
        caller.refusal = 'capacity'
        setPolicyHeader(reply, options.headers, set)
        sendReducedCapacity(reply)
        return false
      }
      // not a rate-limit event, but still a limited response: read the state to report it
      return andThen(decide(caller, set, set.unitIncrements, false), (state) => {
        if (state.degraded) caller.storeFailed = true
        if (state.reply !== undefined) {
          const info = { ...toInfo(set, state.reply, cost, set.unitIncrements, caller.tier, state.degraded), allowed: false, cost, retryAfterMs: Infinity, maxCost: full.maxCost }
          request.rateLimit = info
          fields(reply, set, info, caller)
        } else {
          setPolicyHeader(reply, options.headers, set)
        }
        sendCostTooLarge(reply, full, cost, caller.tier !== null && plan.tiers.has(caller.tier) ? caller.tier : null)
        return false
      })
    }
    return andThen(decide(caller, set, increments, charge), (outcome) => {
      // so that a body-cost route waits for a failing store once, not in each of its two hooks
      if (outcome.degraded) caller.storeFailed = true
      if (outcome.reply === undefined) {
        if (plan.onStoreError === 'allow') {
          if (charge) slotFields(reply, caller)
          return true
        }
        sendStoreUnavailable(reply)
        return false
      }
      if (!charge && outcome.reply.allowed) return true
      const info = toInfo(set, outcome.reply, cost, increments, caller.tier, outcome.degraded)
      request.rateLimit = info
      fields(reply, set, info, caller)
      if (info.allowed) {
        caller.chargedSet = set
        caller.chargedIncrements = increments
        caller.chargedCost = cost
        caller.chargedLocally = outcome.degraded
        return true
      }
      sendTooManyRequests(request, reply, options, info, !charge)
      return false
    })
  }

  // Callback-style hooks: a decision that needs no I/O (the memory store) goes on at once,
  // without a promise. An answered request never calls `done`: Fastify stops there.
  const hook = (charge: boolean) => function (this: unknown, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    let step: Step
    try {
      step = limit(request, reply, charge)
    } catch (error) {
      done(error as Error)
      return
    }
    if (step === true) done()
    else if (step !== false) step.then((go) => { if (go) done() }, (error: unknown) => done(error as Error))
  }
  const charging = hook(true)
  const checking = hook(false)

  // the route's settle option: after the response, unless the handler settled already
  const settleHook: onResponseHookHandler | undefined = plan.settle === undefined
    ? undefined
    : async function (request, reply) {
      const caller = (request as WithCaller)[kCaller]
      if (caller === null || caller.settled || caller.chargedSet === null) return
      try {
        const actual = await plan.settle!(request, reply)
        await settlementOf(reply)!.settle(actual)
      } catch (error) {
        request.log.error({ err: error }, `fastify-gcra: the settle option of ${plan.label} failed; the estimated cost stands`)
      }
    }

  const hooks = options.hook === 'preHandler'
    ? { preHandler: charging }
    : typeof plan.cost === 'number' ? { onRequest: charging } : { onRequest: checking, preHandler: charging }
  return settleHook === undefined ? hooks : { ...hooks, onResponse: settleHook }
}
