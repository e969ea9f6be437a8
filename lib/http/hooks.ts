/**
 * The route hooks: one straight way per request,
 *   state (identity, tier, scale) → slots (concurrency) → policy set and cost
 *   → capacity (413, or 503 at a reduced scale) → decision → fields and body
 *   → (within the route's `delay`) the hold until its slot.
 * In shadow mode a refusal is recorded and reported, and the request goes on.
 * A fixed cost is charged in `onRequest`. A cost computed from the body is checked in
 * `onRequest` (an empty bucket is turned away before the body is read) and charged in
 * `preHandler`, after parsing and validation. Every decision records the request's outcome.
 */
import type {
  FastifyReply, FastifyRequest, HookHandlerDoneFunction, onRequestHookHandler, onResponseHookHandler, preHandlerHookHandler,
} from 'fastify'
import { holdUs, type DecideOptions, type StoreDecision } from '../decision/decide.js'
import { concurrencyInfo, neverFits, toInfo, unavailableInfo } from '../decision/info.js'
import type { Engine } from '../engine.js'
import { Caller } from '../identity/caller.js'
import type { SlotOutcome } from '../inference/concurrency.js'
import { settleCharge, settlementOf } from '../inference/settle.js'
import { costOf, type RoutePlan } from '../limits/plan.js'
import { exceedsCapacity, incrementsFor, type PolicySet } from '../limits/policy.js'
import { kState } from '../symbols.js'
import type { RateLimitInfo } from '../types.js'
import { andThen, type MaybePromise } from '../util/maybe.js'
import { setConcurrencyHeaders, setPolicyHeader, setRateLimitHeaders } from './fields.js'
import { sendCostTooLarge, sendReducedCapacity, sendRouteBusy, sendStoreUnavailable, sendTooManyRequests } from './problems.js'
import { RequestState } from './state.js'

type Limited = FastifyRequest & { [kState]: RequestState | null }

/** A step's result: go on (true) or answered (false), now or later. */
type Step = boolean | Promise<boolean>

/** `next()` once `step` says go on. */
function then (step: Step, next: () => Step): Step {
  if (step === true) return next()
  if (step === false) return false
  return step.then(go => go && next())
}

export interface RouteHooks {
  onRequest?: onRequestHookHandler
  preHandler?: preHandlerHookHandler
  onResponse?: onResponseHookHandler
}

export function routeHooks (engine: Engine, plan: RoutePlan): RouteHooks {
  const { options, planner, scales, identity, decider, slots, holds } = engine
  const headers = options.headers
  const shadow = plan.shadow

  /**
   * A refusal: sent, and the request stops (false); in shadow mode it is only recorded
   * (the outcome, the fields, `request.rateLimit`) and the request goes on (true).
   */
  function refuse (state: RequestState, send: () => void): boolean {
    if (shadow) {
      // enforced, the request would stop here: nothing later is decided or charged
      state.refusedInShadow = true
      return true
    }
    send()
    return false
  }

  /** The request's state, made once: the early check and the charge share it. */
  function stateOf (request: Limited): MaybePromise<RequestState> {
    // one after the other: a second pending promise would reject unobserved if the first threw
    const caller = identity.caller(request)
    return caller instanceof Caller ? withTier(request, caller) : caller.then(c => withTier(request, c))
  }

  function withTier (request: Limited, caller: Caller): MaybePromise<RequestState> {
    const tier = identity.tier(request)
    return tier === null || typeof tier === 'string' ? made(request, caller, tier) : tier.then(t => made(request, caller, t))
  }

  function made (request: Limited, caller: Caller, tier: string | null): RequestState {
    const state = new RequestState(plan, caller, tier, scales.applies(plan) ? scales.of(plan, request) : 100)
    request[kState] = state
    return state
  }

  /**
   * Returns false once the request has been answered. `charge` false: the early check of a
   * body-cost route. Straight through, without a promise or a closure, while nothing waits
   * for I/O (a known caller on the memory store).
   */
  function limit (request: Limited, reply: FastifyReply, charge: boolean): Step {
    const state = request[kState] ?? stateOf(request)
    return state instanceof RequestState ? limitFor(request, reply, state, charge) : state.then(s => limitFor(request, reply, s, charge))
  }

  function limitFor (request: Limited, reply: FastifyReply, state: RequestState, charge: boolean): Step {
    if (state.refusedInShadow) return true
    if (plan.concurrency === undefined || state.slotsAsked) return rate(request, reply, state, charge)
    return then(takeSlots(request, reply, state, charge), () => state.refusedInShadow || rate(request, reply, state, charge))
  }

  /** Concurrency: the caller's slot, then the route's; once per request, given back when the response closes. */
  function takeSlots (request: FastifyRequest, reply: FastifyReply, state: RequestState, charge: boolean): Step {
    state.slotsAsked = true
    // whatever ends the response (sent, aborted, timed out, an error) gives the slots back
    const raw = reply.raw
    raw.once('close', () => {
      state.closed = true
      slots.release(state.slots)
    })
    // closed already (the client left during an earlier hook): 'close' will not come again
    if (raw.destroyed || raw.closed) {
      state.closed = true
      return false
    }
    return andThen(slots.acquire(state.key, plan.concurrency!, state.tier, plan.onStoreError), outcome => slotsTaken(request, reply, state, charge, outcome))
  }

  function slotsTaken (request: FastifyRequest, reply: FastifyReply, state: RequestState, charge: boolean, outcome: SlotOutcome): boolean {
    if (outcome.refused === undefined) {
      state.slots = outcome.held
      // the rate decision does not wait for a store that just failed
      if (outcome.storeFailed) state.storeFailed = true
      // the response closed while the slots were being taken
      if (state.closed) {
        slots.release(outcome.held)
        return false
      }
      return true
    }
    if (outcome.refused === 'store') {
      state.outcome = 'store_unavailable'
      state.storeFailed = true
      if (shadow) request.rateLimit = unavailableInfo(undefined, 1, state.tier, true)
      return refuse(state, () => sendStoreUnavailable(reply))
    }
    if (outcome.refused === 'route') {
      state.outcome = 'reduced_capacity'
      if (shadow) request.rateLimit = shadowed(concurrencyInfo(outcome.limit, state.tier))
      return refuse(state, () => sendRouteBusy(reply, outcome.limit))
    }
    state.outcome = 'concurrency_refused'
    const info = shadowed(concurrencyInfo(outcome.limit, state.tier))
    request.rateLimit = info
    setConcurrencyHeaders(reply, headers, outcome.limit, 0)
    return refuse(state, () => sendTooManyRequests(request, reply, options, info, !charge, 'concurrency'))
  }

  function shadowed (info: RateLimitInfo): RateLimitInfo {
    return shadow ? { ...info, shadow: true } : info
  }

  /** The tier's policy set at the request's scale, and the cost to decide. */
  function rate (request: FastifyRequest, reply: FastifyReply, state: RequestState, charge: boolean): Step {
    const set = planner.setAt(plan, state.tier, state.hundredths)
    if (set.policies.length === 0) {
      // a route with a concurrency limit only: its slot was the whole decision
      if (charge) {
        state.outcome = !state.storeFailed ? 'admitted' : plan.onStoreError === 'local' ? 'admitted_locally' : 'unchecked'
        slotFields(reply, state)
      }
      return true
    }
    if (!charge) {
      // a cost of 1 that can never fit is the charge's 413 to give, after the body is read
      if (exceedsCapacity(set, set.unitIncrements)) return true
      return decideCost(request, reply, state, set, 1, set.unitIncrements, false)
    }
    if (typeof plan.cost === 'number') return decideCost(request, reply, state, set, plan.cost, set.fixedIncrements!, true)
    return costOf(plan, request).then(cost => decideCost(request, reply, state, set, cost, incrementsFor(set.policies, cost), true))
  }

  /**
   * `next(decision)`, at once or in the decision's one promise. `write` false: only read the
   * buckets (an early check, a 413's state); a free request is a read whatever it says.
   */
  function decide<R> (state: RequestState, set: PolicySet, incrementsUs: readonly number[], write: boolean, delayUs: number, next: (decision: StoreDecision) => R): MaybePromise<R> {
    return decider.decideThen(state.caller, set, incrementsUs, state.storeFailed ? { ...how(write, delayUs), storeFailed: true } : how(write, delayUs), next)
  }

  // the route's decide options, made once (a request on a failing store adds its own)
  const onStoreError = plan.onStoreError
  const hows: DecideOptions[] = [false, true].flatMap(charge => [0, plan.delayUs].map(delayUs => ({ charge, onStoreError, delayUs })))
  const how = (write: boolean, delayUs: number): DecideOptions => hows[(write ? 2 : 0) + (delayUs === 0 ? 0 : 1)]!

  function decideCost (request: FastifyRequest, reply: FastifyReply, state: RequestState, set: PolicySet, cost: number, incrementsUs: readonly number[], charge: boolean): Step {
    if (exceedsCapacity(set, incrementsUs)) return tooLarge(request, reply, state, set, cost, incrementsUs)
    const delayUs = plan.delayUs
    // a check or a route without delay: one decision
    if (delayUs === 0 || !charge) return decide(state, set, incrementsUs, charge, delayUs, d => answer(request, reply, state, set, cost, incrementsUs, charge, d, delayUs, false)) as Step
    const finish = (decision: StoreDecision, usedUs: number, reserved: boolean): Step => answer(request, reply, state, set, cost, incrementsUs, charge, decision, usedUs, reserved)
    // shaping: a request that fits now is admitted at once; one that does not (charged
    // nothing) takes a place among the `maxDelayed` and is decided again with the delay:
    // held until its slot, or refused. With no place left, it stays refused. Shadow mode
    // decides the same way and keeps the place, but serves at once.
    return decide(state, set, incrementsUs, true, 0, (now): Step => {
      if (now.reply === undefined || now.reply.allowed || !holds.reserve()) return finish(now, 0, false)
      // a store that just failed is not asked again
      if (now.degraded) state.storeFailed = true
      // the place goes back when the decision itself fails; once decided, `answer` keeps or frees it
      let decided = false
      const held = (d: StoreDecision): Step => {
        decided = true
        return finish(d, delayUs, true)
      }
      let later: Step
      try {
        later = decide(state, set, incrementsUs, true, delayUs, held) as Step
      } catch (error) {
        if (!decided) holds.unreserve()
        throw error
      }
      if (typeof later === 'boolean') return later
      return later.then(undefined, (error: unknown) => {
        if (!decided) holds.unreserve()
        throw error
      })
    }) as Step
  }

  /** A cost no wait can make fit: 413; or 503 when it fits the route at full scale (the service admits less for now). */
  function tooLarge (request: FastifyRequest, reply: FastifyReply, state: RequestState, set: PolicySet, cost: number, incrementsUs: readonly number[]): Step {
    // the largest cost the tier ever admits is the one at full scale
    const full = state.hundredths < 100 ? planner.setFor(plan, state.tier) : set
    if (full !== set && !exceedsCapacity(full, incrementsFor(full.policies, cost))) {
      state.outcome = 'reduced_capacity'
      setPolicyHeader(reply, headers, set)
      if (shadow) request.rateLimit = unavailableInfo(set, cost, state.tier, false)
      return refuse(state, () => sendReducedCapacity(reply, set.policies.filter((_, i) => incrementsUs[i]! > set.capacitiesUs[i]!).map(p => p.name)))
    }
    // not a rate-limit event, but still a limited response: read the state to report it
    return decide(state, set, set.unitIncrements, false, 0, (decision) => {
      if (decision.degraded) state.storeFailed = true
      state.outcome = 'too_large'
      if (decision.reply !== undefined) {
        const info = { ...toInfo(set, decision.reply, cost, set.unitIncrements, state.tier, decision.degraded), allowed: false, cost, retryAfterMs: Infinity, maxCost: full.maxCost, shadow }
        request.rateLimit = info
        fields(reply, set, info, state)
      } else {
        setPolicyHeader(reply, headers, set)
        if (shadow) request.rateLimit = { ...neverFits(full, cost, state.tier), degraded: true, shadow }
      }
      return refuse(state, () => sendCostTooLarge(reply, full, cost, state.tier !== null && plan.tiers.has(state.tier) ? state.tier : null))
    })
  }

  /**
   * The decision's answer: go on (admitted, or unchecked under 'allow'), wait for the slot
   * (admitted within the delay), or 429 / 503. `reserved`: the decision took a place among
   * the held requests, which it keeps only when it holds its request.
   */
  function answer (request: FastifyRequest, reply: FastifyReply, state: RequestState, set: PolicySet, cost: number, incrementsUs: readonly number[], charge: boolean, decision: StoreDecision, delayUs: number, reserved: boolean): Step {
    // so that a body-cost route waits for a failing store once, not in each of its two hooks
    if (decision.degraded) state.storeFailed = true
    const storeReply = decision.reply
    const waitUs = charge && delayUs > 0 && storeReply !== undefined && storeReply.allowed ? holdUs(set, storeReply) : 0
    if (reserved && waitUs === 0) holds.unreserve()
    if (storeReply === undefined) {
      if (plan.onStoreError === 'allow') {
        state.outcome = 'unchecked'
        if (charge) slotFields(reply, state)
        return true
      }
      state.outcome = 'store_unavailable'
      if (shadow) request.rateLimit = unavailableInfo(set, cost, state.tier, true)
      return refuse(state, () => sendStoreUnavailable(reply))
    }
    if (!charge && storeReply.allowed) {
      // the charge decides; until it does, a request the store failed is unchecked
      if (decision.degraded) state.outcome = 'unchecked'
      return true
    }
    const heldMs = Math.ceil(waitUs / 1000)
    let info = toInfo(set, storeReply, cost, incrementsUs, state.tier, decision.degraded, delayUs)
    if (heldMs > 0 || shadow) info = { ...info, delayedMs: heldMs, shadow }
    request.rateLimit = info
    fields(reply, set, info, state)
    if (info.allowed) {
      state.outcome = decision.degraded ? 'admitted_locally' : heldMs > 0 ? 'delayed' : 'admitted'
      // a free request was charged nothing: it has nothing to settle
      const charged = cost > 0 ? { set, keys: state.caller.keysOf(set, decider.keys), incrementsUs, cost, locally: decision.degraded } : undefined
      state.charged = charged
      if (heldMs === 0) return true
      if (shadow) {
        holds.keepFor(heldMs)
        return true
      }
      // its slot is `heldMs` away: served then, unless the client leaves first (then the
      // charge goes back, and a later request may have the slot)
      return holds.hold(reply, heldMs, () => {
        if (charged === undefined || state.settled) return
        state.settled = true
        Promise.resolve(settleCharge(decider, state.key, charged, 0)).catch((error: unknown) => {
          request.log.warn({ err: error }, 'fastify-gcra: could not refund a held request whose client left')
        })
      })
    }
    state.outcome = decision.degraded ? 'refused_locally' : 'refused'
    return refuse(state, () => sendTooManyRequests(request, reply, options, info, !charge))
  }

  /** Fields for a decision: all of them from the store; while degraded, only what stays true. */
  function fields (reply: FastifyReply, set: PolicySet, info: RateLimitInfo, state: RequestState): void {
    if (info.degraded) setPolicyHeader(reply, headers, set)
    else setRateLimitHeaders(reply, headers, set, info)
    slotFields(reply, state)
  }

  function slotFields (reply: FastifyReply, state: RequestState): void {
    const held = state.slots
    if (held !== undefined && held.limit > 0) setConcurrencyHeaders(reply, headers, held.limit, held.remaining)
  }

  // Callback-style hooks: a decision that needs no I/O (the memory store) goes on at once,
  // without a promise. An answered request never calls `done`: Fastify stops there.
  const hook = (charge: boolean) => function (this: unknown, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    let step: Step
    try {
      step = limit(request as Limited, reply, charge)
    } catch (error) {
      done(error as Error)
      return
    }
    if (step === true) done()
    else if (step !== false) step.then((go) => { if (go) done() }, (error: unknown) => done(error as Error))
  }
  const charging = hook(true)
  const checking = hook(false)

  const hooks: RouteHooks = options.hook === 'preHandler'
    ? { preHandler: charging }
    : typeof plan.cost === 'number' ? { onRequest: charging } : { onRequest: checking, preHandler: charging }
  // the route's settle option: after the response, unless the handler settled already
  const settle = plan.settle
  if (settle !== undefined) {
    hooks.onResponse = async function (request, reply) {
      const state = (request as Limited)[kState]
      if (state === null || state.settled || state.charged === undefined) return
      try {
        await settlementOf(reply, decider)!.settle(await settle(request, reply))
      } catch (error) {
        request.log.error({ err: error }, `fastify-gcra: the settle option of ${plan.label} failed; the estimated cost stands`)
      }
    }
  }
  return hooks
}
