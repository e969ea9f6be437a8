/**
 * One request's state on a limited route, kept under `kState` between its hooks: who is
 * calling, what it holds and was charged, and what the limiter decided — recorded when
 * each decision is made, so nothing has to be worked out afterwards.
 */
import type { Caller } from '../identity/caller.js'
import type { HeldSlots } from '../inference/concurrency.js'
import type { Settlement } from '../inference/settle.js'
import type { RoutePlan } from '../limits/plan.js'
import type { PolicySet } from '../limits/policy.js'
import type { RequestOutcome } from '../observe/outcome.js'

/** What a request was charged: what `settle` moves, in the store that charged it. */
export interface Charge {
  readonly set: PolicySet
  /** The store keys charged (the caller's keys of `set`). */
  readonly keys: readonly string[]
  readonly incrementsUs: readonly number[]
  readonly cost: number
  /** Charged by this process while the store failed ('local'). */
  readonly locally: boolean
}

export class RequestState {
  readonly plan: RoutePlan
  /** The caller (its store keys), its hashed identity, and its tier name (null: none). */
  readonly caller: Caller
  readonly key: string
  readonly tier: string | null
  /** The scale of admitted rates for this request, in hundredths. */
  readonly hundredths: number
  /** What the limiter decided; undefined until a decision is made (or when none is). */
  outcome: RequestOutcome | undefined = undefined
  /** The store failed this request once already: later decisions do not wait for it again. */
  storeFailed = false
  /** Slots were asked for (once per request); those it holds. */
  slotsAsked = false
  slots: HeldSlots | undefined = undefined
  /** The response closed: slots that arrive later go straight back. */
  closed = false
  charged: Charge | undefined = undefined
  /** Shadow mode: a decision refused this request, which is served without any later one. */
  refusedInShadow = false
  settled = false
  settlement: Settlement | undefined = undefined

  constructor (plan: RoutePlan, caller: Caller, tier: string | null, hundredths: number) {
    this.plan = plan
    this.caller = caller
    this.key = caller.key
    this.tier = tier
    this.hundredths = hundredths
  }
}
