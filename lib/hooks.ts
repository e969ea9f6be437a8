/**
 * The route hooks: charge fixed costs in `onRequest`; for costs computed from the body,
 * turn away an empty bucket in `onRequest` and charge in `preHandler`, after parsing and
 * validation.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler, preHandlerHookHandler } from 'fastify'
import { FST_GCRA_INVALID_COST, describeKind } from './errors.js'
import { incrementUs } from './gcra.js'
import { isThenable, toInfo, type Limiter, type Outcome, type RoutePlan } from './limiter.js'
import type { RateLimitInfo } from './types.js'
import type { MaybePromise, NormalisedOptions } from './options.js'
import { exceedsCapacity, type PolicySet } from './policy.js'
import { sendCostTooLarge, sendStoreUnavailable, sendTooManyRequests, setPolicyHeader, setRateLimitHeaders } from './response.js'

/** Where a request's resolved identity is kept between its onRequest and preHandler. */
export const kCaller = Symbol('fastify-gcra.caller')

interface Caller {
  readonly key: string
  readonly tier: string | null
  /** The store failed this request once already (the check before the body). */
  storeFailed: boolean
}

type WithCaller = FastifyRequest & { [kCaller]: Caller | null }

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

/** `next(value)`, at once when `value` is not a promise: the memory store's path stays synchronous. */
function then<T> (value: T | PromiseLike<T>, next: (value: T) => Step): Step {
  return isThenable(value) ? Promise.resolve(value).then(next) : next(value as T)
}

export function routeHooks (limiter: Limiter, options: NormalisedOptions, plan: RoutePlan): {
  onRequest?: onRequestHookHandler
  preHandler?: preHandlerHookHandler
} {
  /** Fields for a decision: all of them from the store; while degraded, only what stays true. */
  const fields = (reply: FastifyReply, set: PolicySet, info: RateLimitInfo): void => {
    if (info.degraded) setPolicyHeader(reply, options.headers, set)
    else setRateLimitHeaders(reply, options.headers, set, info)
  }

  const decide = (caller: Caller, set: PolicySet, increments: readonly number[], charge: boolean): MaybePromise<Outcome> =>
    limiter.decide(caller.key, set, increments, charge, plan.onStoreError, caller.storeFailed)

  /** Returns false when the request has been answered. `charge` false: the early check of a body-cost route. */
  function limit (request: FastifyRequest, reply: FastifyReply, charge: boolean): Step {
    const req = request as WithCaller
    const known = req[kCaller]
    if (known !== null) return withCaller(request, reply, charge, known)
    // one after the other: a second pending promise would reject unobserved if the first threw
    return then(limiter.resolveKey(request), key => then(limiter.resolveTier(request), (tier) => {
      const caller: Caller = { key, tier, storeFailed: false }
      req[kCaller] = caller
      return withCaller(request, reply, charge, caller)
    }))
  }

  function withCaller (request: FastifyRequest, reply: FastifyReply, charge: boolean, caller: Caller): Step {
    const set = limiter.setFor(plan, caller.tier)
    if (!charge) {
      // a cost of 1 that can never fit is the charge's 413 to give, after the body is read
      if (exceedsCapacity(set, set.unitIncrements)) return true
      return withCost(request, reply, false, caller, set, 1, set.unitIncrements)
    }
    if (typeof plan.cost === 'number') return withCost(request, reply, true, caller, set, plan.cost, set.fixedIncrements!)
    return costOf(plan, request).then(cost => withCost(request, reply, true, caller, set, cost, set.policies.map(p => incrementUs(cost, p.intervalUs))))
  }

  function withCost (request: FastifyRequest, reply: FastifyReply, charge: boolean, caller: Caller, set: PolicySet, cost: number, increments: readonly number[]): Step {
    if (exceedsCapacity(set, increments)) {
      // not a rate-limit event, but still a limited response: read the state to report it
      return then(decide(caller, set, set.unitIncrements, false), (state) => {
        if (state.degraded) caller.storeFailed = true
        if (state.reply !== undefined) {
          const info = { ...toInfo(set, state.reply, cost, set.unitIncrements, caller.tier, state.degraded), allowed: false, cost, retryAfterMs: Infinity }
          request.rateLimit = info
          fields(reply, set, info)
        } else {
          setPolicyHeader(reply, options.headers, set)
        }
        sendCostTooLarge(reply, set, cost, caller.tier !== null && plan.tiers.has(caller.tier) ? caller.tier : null)
        return false
      })
    }
    return then(decide(caller, set, increments, charge), (outcome) => {
      // so that a body-cost route waits for a failing store once, not in each of its two hooks
      if (outcome.degraded) caller.storeFailed = true
      if (outcome.reply === undefined) {
        if (plan.onStoreError === 'allow') return true
        sendStoreUnavailable(reply)
        return false
      }
      if (!charge && outcome.reply.allowed) return true
      const info = toInfo(set, outcome.reply, cost, increments, caller.tier, outcome.degraded)
      request.rateLimit = info
      fields(reply, set, info)
      if (info.allowed) return true
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

  if (options.hook === 'preHandler') return { preHandler: charging }
  if (typeof plan.cost === 'number') return { onRequest: charging }
  return { onRequest: checking, preHandler: charging }
}
