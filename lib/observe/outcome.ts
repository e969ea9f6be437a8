/**
 * What the limiter did with a request, as its route hooks recorded it in the request's
 * state. One `onResponse` hook per limited route feeds the metrics and the refusal log.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onResponseHookHandler } from 'fastify'
import type { RequestState } from '../http/state.js'
import { kState } from '../symbols.js'

/**
 * - `admitted` / `refused`: decided by the store (429 when refused; a refusal may come
 *   from the local deny cache, which repeats the store's answer);
 * - `delayed`: admitted by the store within the route's `delay`, and held until its slot;
 * - `admitted_locally` / `refused_locally`: decided in this process while the store
 *   failed (`onStoreError: 'local'`);
 * - `too_large`: a cost no wait can make fit (413);
 * - `store_unavailable`: the store failed and `onStoreError` is `'deny'` (503);
 * - `unchecked`: the store failed and `onStoreError` is `'allow'`: served without a decision;
 * - `concurrency_refused`: the caller had as many requests in flight as it may (429);
 * - `reduced_capacity`: the route was at its concurrency capacity, or a scale below 1
 *   left too little room for the request's cost (503).
 */
export type RequestOutcome =
  | 'admitted' | 'refused' | 'admitted_locally' | 'refused_locally' | 'too_large' | 'store_unavailable' | 'unchecked'
  | 'concurrency_refused' | 'reduced_capacity' | 'delayed'

export const OUTCOMES: readonly RequestOutcome[] = [
  'admitted', 'refused', 'admitted_locally', 'refused_locally', 'too_large', 'store_unavailable', 'unchecked',
  'concurrency_refused', 'reduced_capacity', 'delayed',
]

/** What a route's observers are told about one decided request. */
export interface Observation {
  /** The route label, 'METHOD /url'. */
  readonly route: string
  /** A configured tier name, or 'none' (no tier, or one the plugin does not know). */
  readonly tier: string
  readonly outcome: RequestOutcome
  /** Decided in shadow mode: served whatever the outcome says. */
  readonly shadow: boolean
}

export type ObservationSink = (request: FastifyRequest, reply: FastifyReply, seen: Observation) => void

type Observed = FastifyRequest & { [kState]?: RequestState | null }

/**
 * The outcome the limiter recorded for a request, or undefined when it made no decision:
 * answered by an earlier hook, a resolver or cost function that threw, or a body-cost route
 * left before its charge (e.g. a 400 from validation).
 */
export function outcomeOf (request: FastifyRequest): RequestOutcome | undefined {
  return (request as Observed)[kState]?.outcome
}

/** The tier label of a request: a configured tier, else 'none' (never text a caller chose). */
export function tierLabel (request: FastifyRequest, tiers: ReadonlyMap<string, number>): string {
  const tier = (request as Observed)[kState]?.tier ?? null
  return tier !== null && tiers.has(tier) ? tier : 'none'
}

/** The `onResponse` hook of one limited route: tell every sink what was decided. */
export function observeRoute (route: string, tiers: ReadonlyMap<string, number>, sinks: readonly ObservationSink[]): onResponseHookHandler {
  return function (this: unknown, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const state = (request as Observed)[kState]
    const outcome = state?.outcome
    if (outcome !== undefined) {
      const seen: Observation = { route, tier: tierLabel(request, tiers), outcome, shadow: state!.plan.shadow }
      for (const sink of sinks) sink(request, reply, seen)
    }
    done()
  }
}
