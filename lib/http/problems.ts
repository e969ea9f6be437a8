/**
 * The plugin's own answers: 429 (quota exceeded), 413 (a cost that can never fit) and 503
 * (store unavailable, reduced capacity), as RFC 9457 problem details.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { PolicySet } from '../limits/policy.js'
import type { NormalisedOptions } from '../options/normalise.js'
import { boundedMap } from '../util/bounded.js'
import type { RateLimitContext, RateLimitInfo } from '../types.js'

export const QUOTA_EXCEEDED = 'https://iana.org/assignments/http-problem-types#quota-exceeded'
/** Draft-10's problem type for a service that can serve less than usual for now. */
export const TEMPORARY_REDUCED_CAPACITY = 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity'
const PROBLEM_JSON = 'application/problem+json; charset=utf-8'

const seconds = (ms: number): number => Math.ceil(ms / 1000)

function quotedList (names: readonly string[]): string {
  const q = names.map(n => `"${n}"`)
  return q.length === 1 ? q[0]! : `${q.slice(0, -1).join(', ')} and ${q[q.length - 1]}`
}

function units (n: number): string {
  return `${n} unit${n === 1 ? '' : 's'}`
}

/** The default 429 body: an RFC 9457 problem of draft-10's `quota-exceeded` type. */
export function quotaExceededProblem (context: RateLimitContext): Record<string, unknown> {
  const names = context.violated.map(p => p.name)
  const s = context.retryAfterSeconds
  // refused before its body was read, the request's own cost is unknown: only that nothing is left
  const why = context.kind === 'concurrency'
    ? `${context.violated[0]?.quota ?? 0} request${context.violated[0]?.quota === 1 ? '' : 's'} in flight at once`
    : context.beforeBody ? 'no units left' : `this request costs ${units(context.cost)}`
  return {
    type: QUOTA_EXCEEDED,
    title: 'Request quota exceeded',
    status: 429,
    detail: `${names.length === 1 ? 'Limit' : 'Limits'} ${quotedList(names)} exceeded: ${why}. Retry in ${s} second${s === 1 ? '' : 's'}.`,
    'violated-policies': names,
  }
}

// Default 429 bodies, serialized, by what they say: a refused flood repeats a few of them.
const bodies = boundedMap<string>(1000)

export function sendTooManyRequests (request: FastifyRequest, reply: FastifyReply, options: NormalisedOptions, info: RateLimitInfo, beforeBody: boolean, kind: RateLimitContext['kind'] = 'rate'): void {
  const retryAfterSeconds = Math.max(1, seconds(info.retryAfterMs))
  reply.code(429).header('retry-after', retryAfterSeconds)
  if (options.errorResponseBuilder !== undefined) {
    const context: RateLimitContext = { ...info, violated: info.policies.filter(p => p.retryAfterMs > 0), retryAfterSeconds, beforeBody, kind }
    reply.send(options.errorResponseBuilder(request, context))
    return
  }
  // what the body depends on: the refusing policies, the wait, and the cost or kind
  let id = kind === 'concurrency' ? 'c' : beforeBody ? 'b' : `${info.cost}`
  id += `|${retryAfterSeconds}`
  for (const p of info.policies) if (p.retryAfterMs > 0) id += `|${p.name}|${p.quota}`
  let body = bodies.get(id)
  if (body === undefined) {
    const context: RateLimitContext = { ...info, violated: info.policies.filter(p => p.retryAfterMs > 0), retryAfterSeconds, beforeBody, kind }
    body = JSON.stringify(quotaExceededProblem(context))
    bodies.set(id, body)
  }
  reply.type(PROBLEM_JSON).send(body)
}

/** 413: the cost can never fit; no Retry-After, since waiting cannot help. */
export function sendCostTooLarge (reply: FastifyReply, set: PolicySet, cost: number, tier: string | null): void {
  const limiting = set.policies.filter(p => p.capacityUs / p.intervalUs === set.maxCost).map(p => p.name)
  const largest = Math.round(set.maxCost * 1000) / 1000
  reply.code(413).type(PROBLEM_JSON).send({
    type: 'about:blank',
    title: 'Content Too Large',
    status: 413,
    detail: `This request costs ${units(cost)}, more than ${tier === null ? 'this route' : `the "${tier}" tier`} ever admits at once: the largest cost is ${largest} (${quotedList(limiting)}). Send smaller requests.`,
    'max-cost': largest,
  })
}

/** A 503 with `Retry-After: 1` and a problem body: the plugin's answers of "not now, and not your fault". */
function sendUnavailable (reply: FastifyReply, type: string, title: string, detail: string, extra?: Record<string, unknown>): void {
  reply.code(503).header('retry-after', 1).type(PROBLEM_JSON).send({ type, title, status: 503, detail, ...extra })
}

/** 503: the route holds as many requests as it can serve (its `concurrency.route`). */
export function sendRouteBusy (reply: FastifyReply, limit: number): void {
  sendUnavailable(reply, TEMPORARY_REDUCED_CAPACITY, 'Temporary reduced capacity', `This route is serving as many requests as it can (${limit} at once). Retry in 1 second.`)
}

/**
 * 503: at the scale admitted now, this request's cost cannot fit; at full scale it would.
 * `violated`: the policies whose scaled capacity the cost exceeds.
 */
export function sendReducedCapacity (reply: FastifyReply, violated: readonly string[]): void {
  const which = violated.length === 0 ? '' : ` (${violated.length === 1 ? 'limit' : 'limits'} ${quotedList(violated)})`
  sendUnavailable(reply, TEMPORARY_REDUCED_CAPACITY, 'Temporary reduced capacity',
    `This route admits less than usual for now${which}, too little for this request. Retry in 1 second.`,
    { 'violated-policies': [...violated] })
}

/** 503 while the store cannot be reached and `onStoreError` is 'deny'. */
export function sendStoreUnavailable (reply: FastifyReply): void {
  sendUnavailable(reply, 'about:blank', 'Service Unavailable', 'The rate limiter cannot reach its store. Retry in 1 second.')
}
