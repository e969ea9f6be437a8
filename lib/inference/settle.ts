/**
 * Estimate, then settle: a request is charged its estimated cost, and once its true cost
 * is known the difference is refunded or charged, atomically over every limit it was
 * charged against, in the store that charged it.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Decider } from '../decision/decide.js'
import { toInfo } from '../decision/info.js'
import { FST_GCRA_INVALID_SETTLE, describeKind } from '../errors.js'
import { incrementUs } from '../gcra/math.js'
import type { Charge, RequestState } from '../http/state.js'
import type { StoreReply } from '../stores/contract.js'
import { kState } from '../symbols.js'
import type { RateLimitInfo, RateLimitSettlement } from '../types.js'
import { andThen, type MaybePromise } from '../util/maybe.js'

/**
 * Move every bucket of a charge by the difference between the actual cost's increments
 * and the charged ones. Undefined when nothing changes or the store failed (the charge stands).
 */
export function settleCharge (decider: Decider, hashedKey: string, charge: Charge, actual: number): MaybePromise<StoreReply | undefined> {
  const { set, keys, incrementsUs, locally } = charge
  const n = set.policies.length
  const deltas = new Array<number>(n)
  let change = false
  for (let i = 0; i < n; i++) {
    deltas[i] = incrementUs(actual, set.policies[i]!.intervalUs) - incrementsUs[i]!
    if (deltas[i] !== 0) change = true
  }
  if (!change) return undefined
  if (locally) return decider.fallback().adjust(keys, set.capacitiesUs, deltas, decider.reachUs)
  const store = decider.store
  const refund = deltas.some(d => d < 0)
  // a refund may make room where a remembered refusal says there is none: forget them
  // before and after it (a call that times out may still be applied), and tell the others
  if (refund) decider.refunded(hashedKey, false)
  const applied = decider.guard.call<StoreReply, StoreReply | undefined>(hashedKey, () => store.adjust(keys, set.capacitiesUs, deltas, decider.reachUs), reply => reply, () => undefined)
  return andThen(applied, (reply) => {
    if (refund) decider.refunded(hashedKey, true)
    return reply
  })
}

/** `reply.rateLimit`: settle a request's estimated charge at its actual cost. */
export class Settlement implements RateLimitSettlement {
  readonly #state: RequestState
  readonly #request: FastifyRequest
  readonly #decider: Decider

  constructor (state: RequestState, request: FastifyRequest, decider: Decider) {
    this.#state = state
    this.#request = request
    this.#decider = decider
  }

  get charged (): number {
    return this.#state.charged?.cost ?? 0
  }

  get settled (): boolean {
    return this.#state.settled
  }

  settle (actual: number): Promise<RateLimitInfo | null> {
    const state = this.#state
    if (typeof actual !== 'number' || !Number.isFinite(actual) || actual < 0) {
      throw new FST_GCRA_INVALID_SETTLE(`expected a finite number >= 0, got ${describeKind(actual)}`)
    }
    if (state.settled) throw new FST_GCRA_INVALID_SETTLE('this request was settled already')
    state.settled = true
    const charge = state.charged
    if (charge === undefined) return Promise.resolve(null)
    const failed = (error: unknown): null => {
      this.#request.log.warn({ err: error }, 'fastify-gcra: could not settle the cost of a request; its estimate stands')
      return null
    }
    let pending: MaybePromise<StoreReply | undefined>
    try {
      pending = settleCharge(this.#decider, state.key, charge, actual)
    } catch (error) {
      return Promise.resolve(failed(error))
    }
    return Promise.resolve(pending).then((reply) => {
      if (reply === undefined) return null
      // request.rateLimit follows: what was charged in the end, and the state after it
      const info = toInfo(charge.set, reply, actual, charge.set.unitIncrements, state.tier, charge.locally)
      this.#request.rateLimit = info
      return info
    }, failed)
  }
}

/** `reply.rateLimit`: the request's settlement on a limited route, else null. */
export function settlementOf (reply: FastifyReply, decider: Decider): RateLimitSettlement | null {
  const state = (reply.request as FastifyRequest & { [kState]: RequestState | null })[kState]
  if (state === null || state === undefined) return null
  return state.settlement ??= new Settlement(state, reply.request, decider)
}
