/**
 * What the limiter did with a request, read back when the response is sent: from
 * `request.rateLimit`, the caller the route hooks resolved and the status code. One
 * `onResponse` hook per limited route feeds the metrics and the refusal log.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, onResponseHookHandler } from 'fastify'
import { kCaller } from './hooks.js'
import type { StoreErrorPolicy } from './options.js'

/**
 * - `admitted` / `refused`: decided by the store (429 when refused; a refusal may come
 *   from the local deny cache, which repeats the store's answer);
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
  | 'concurrency_refused' | 'reduced_capacity'

export const OUTCOMES: readonly RequestOutcome[] = [
  'admitted', 'refused', 'admitted_locally', 'refused_locally', 'too_large', 'store_unavailable', 'unchecked',
  'concurrency_refused', 'reduced_capacity',
]

/** What a route's observers are told about one decided request. */
export interface Observation {
  /** The route label, 'METHOD /url'. */
  readonly route: string
  /** A configured tier name, or 'none' (no tier, or one the plugin does not know). */
  readonly tier: string
  readonly outcome: RequestOutcome
}

export type ObservationSink = (request: FastifyRequest, reply: FastifyReply, seen: Observation) => void

interface Caller {
  readonly key: string
  readonly tier: string | null
  readonly storeFailed: boolean
  readonly refusal: 'concurrency' | 'capacity' | 'store' | null
  readonly slotOnly: boolean
}

/**
 * The outcome of a request on a limited route, or undefined when the limiter made no
 * decision for it: answered by an earlier hook, a resolver or cost function that threw,
 * or a route whose cost is a function left before its charge (e.g. a 400 from validation).
 */
export function outcomeOf (request: FastifyRequest, statusCode: number, onStoreError: StoreErrorPolicy): RequestOutcome | undefined {
  const caller = (request as unknown as { [kCaller]: Caller | null })[kCaller]
  const refusal = caller?.refusal
  if (refusal === 'concurrency') return 'concurrency_refused'
  if (refusal === 'capacity') return 'reduced_capacity'
  if (refusal === 'store') return 'store_unavailable'
  const info = request.rateLimit
  if (info !== null) {
    if (info.allowed) return info.degraded ? 'admitted_locally' : 'admitted'
    if (info.retryAfterMs === Infinity) return 'too_large'
    return info.degraded ? 'refused_locally' : 'refused'
  }
  if (caller === null || caller === undefined) return undefined
  // a route with only a concurrency limit: its slot was the whole decision
  if (caller.slotOnly) return !caller.storeFailed ? 'admitted' : onStoreError === 'local' ? 'admitted_locally' : 'unchecked'
  if (!caller.storeFailed) return undefined
  // the store failed and there is no decision: under 'deny' the plugin answered (413 or
  // 503); under 'allow' a 413 is the plugin's too (a handler's own 413 would count as one)
  if (statusCode === 413) return 'too_large'
  return onStoreError === 'deny' ? 'store_unavailable' : 'unchecked'
}

/** The tier label of a request: a configured tier, else 'none' (never text a caller chose). */
export function tierLabel (request: FastifyRequest, tiers: ReadonlyMap<string, number>): string {
  const caller = (request as unknown as { [kCaller]: Caller | null })[kCaller]
  const tier = caller?.tier ?? null
  return tier !== null && tiers.has(tier) ? tier : 'none'
}

/** The `onResponse` hook of one limited route: classify, then tell every sink. */
export function observeRoute (route: string, onStoreError: StoreErrorPolicy, tiers: ReadonlyMap<string, number>, sinks: readonly ObservationSink[]): onResponseHookHandler {
  return function (this: unknown, request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const outcome = outcomeOf(request, reply.statusCode, onStoreError)
    if (outcome !== undefined) {
      const seen: Observation = { route, tier: tierLabel(request, tiers), outcome }
      for (const sink of sinks) sink(request, reply, seen)
    }
    done()
  }
}
