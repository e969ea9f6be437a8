/**
 * The route hooks: charge fixed costs in `onRequest`; for costs computed from the body,
 * turn away an empty bucket in `onRequest` and charge in `preHandler`, after parsing and
 * validation.
 */
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler, preHandlerAsyncHookHandler } from 'fastify'
import { FST_GCRA_INVALID_COST, describeKind } from './errors.js'
import { incrementUs } from './gcra.js'
import { isThenable, toInfo, type Limiter, type Outcome, type RoutePlan } from './limiter.js'
import type { RateLimitInfo } from './types.js'
import type { NormalisedOptions } from './options.js'
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

export function routeHooks (limiter: Limiter, options: NormalisedOptions, plan: RoutePlan): {
  onRequest?: onRequestAsyncHookHandler
  preHandler?: preHandlerAsyncHookHandler
} {
  const decide = async (caller: Caller, set: PolicySet, increments: readonly number[], charge: boolean): Promise<Outcome> => {
    const pending = limiter.decide(caller.key, set, increments, charge, plan.onStoreError, caller.storeFailed)
    const outcome = isThenable(pending) ? await pending : pending
    // so that a body-cost route waits for a failing store once, not in each of its two hooks
    if (outcome.degraded) caller.storeFailed = true
    return outcome
  }

  /** Fields for a decision: all of them from the store; while degraded, only what stays true. */
  const fields = (reply: FastifyReply, set: PolicySet, info: RateLimitInfo): void => {
    if (info.degraded) setPolicyHeader(reply, options.headers, set)
    else setRateLimitHeaders(reply, options.headers, set, info)
  }

  /** Returns false when the request has been answered. `charge` false: the early check of a body-cost route. */
  async function limit (request: FastifyRequest, reply: FastifyReply, charge: boolean): Promise<boolean> {
    const req = request as WithCaller
    let caller = req[kCaller]
    if (caller === null) {
      // one after the other: a second pending promise would reject unobserved if the first threw
      const pendingKey = limiter.resolveKey(request)
      const key = isThenable(pendingKey) ? await pendingKey : pendingKey
      const pendingTier = limiter.resolveTier(request)
      const tier = isThenable(pendingTier) ? await pendingTier : pendingTier
      caller = { key, tier, storeFailed: false }
      req[kCaller] = caller
    }
    const set = limiter.setFor(plan, caller.tier)
    let cost = 1
    let increments = set.unitIncrements
    if (!charge) {
      // a cost of 1 that can never fit is the charge's 413 to give, after the body is read
      if (exceedsCapacity(set, increments)) return true
    } else if (typeof plan.cost === 'number') {
      cost = plan.cost
      increments = set.fixedIncrements!
    } else {
      cost = await costOf(plan, request)
      increments = set.policies.map(p => incrementUs(cost, p.intervalUs))
    }
    if (exceedsCapacity(set, increments)) {
      // not a rate-limit event, but still a limited response: read the state to report it
      const state = await decide(caller, set, set.unitIncrements, false)
      if (state.reply !== undefined) {
        const info = { ...toInfo(set, state.reply, cost, set.unitIncrements, caller.tier, state.degraded), allowed: false, cost, retryAfterMs: Infinity }
        request.rateLimit = info
        fields(reply, set, info)
      } else {
        setPolicyHeader(reply, options.headers, set)
      }
      sendCostTooLarge(reply, set, cost, caller.tier !== null && plan.tiers.has(caller.tier) ? caller.tier : null)
      return false
    }

    const outcome = await decide(caller, set, increments, charge)
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
  }

  const charging = async function (this: unknown, request: FastifyRequest, reply: FastifyReply) {
    if (!(await limit(request, reply, true))) return reply
  }
  const checking = async function (this: unknown, request: FastifyRequest, reply: FastifyReply) {
    if (!(await limit(request, reply, false))) return reply
  }

  if (options.hook === 'preHandler') return { preHandler: charging }
  if (typeof plan.cost === 'number') return { onRequest: charging }
  return { onRequest: checking, preHandler: charging }
}
