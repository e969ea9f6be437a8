/**
 * The rate-limit fields of a response: IETF draft-10 `RateLimit` / `RateLimit-Policy`,
 * the legacy `X-RateLimit-*`, both or none. The policy field is built once per policy set;
 * a request writes only its numbers.
 */
import type { FastifyReply } from 'fastify'
import { CONCURRENCY } from '../limits/plan.js'
import type { PolicySet } from '../limits/policy.js'
import type { NormalisedOptions } from '../options/normalise.js'
import type { RateLimitInfo } from '../types.js'

const seconds = (ms: number): number => Math.ceil(ms / 1000)

/** The index of the policy a single-policy view (legacy fields) reports: the one that refused, else the one with least left. */
function mostRestrictive (info: RateLimitInfo): number {
  let pick = 0
  for (let i = 1; i < info.policies.length; i++) {
    const p = info.policies[i]!
    const best = info.policies[pick]!
    if (info.allowed ? p.remaining < best.remaining : p.retryAfterMs > best.retryAfterMs) pick = i
  }
  return pick
}

/** The `RateLimit` field value: `"name";r=<remaining>;t=<seconds until more quota>` per policy. */
export function rateLimitField (info: RateLimitInfo): string {
  let out = ''
  for (const p of info.policies) {
    if (out !== '') out += ', '
    out += `"${p.name}";r=${p.remaining};t=${seconds(p.resetMs)}`
  }
  return out
}

/** Only the static `RateLimit-Policy` field: what can be said without the store. */
export function setPolicyHeader (reply: FastifyReply, mode: NormalisedOptions['headers'], set: PolicySet): void {
  if (mode === 'draft' || mode === 'both') reply.header('ratelimit-policy', set.policyField)
}

export function setRateLimitHeaders (reply: FastifyReply, mode: NormalisedOptions['headers'], set: PolicySet, info: RateLimitInfo): void {
  if (mode === false || info.policies.length === 0) return
  setPolicyHeader(reply, mode, set)
  if (mode !== 'legacy') reply.header('ratelimit', rateLimitField(info))
  if (mode !== 'draft') {
    const i = mostRestrictive(info)
    const p = info.policies[i]!
    // the policy's advertised q (its capacity at least), so that Limit ≥ Remaining
    reply.header('x-ratelimit-limit', set.policies[i]!.advertisedQuota)
    reply.header('x-ratelimit-remaining', p.remaining)
    reply.header('x-ratelimit-reset', seconds(p.resetMs))
  }
}

function appendField (reply: FastifyReply, name: string, item: string): void {
  const present = reply.getHeader(name)
  reply.header(name, present === undefined || present === '' ? item : `${String(present)}, ${item}`)
}

/** Draft-10 items of a caller's concurrency limit, after the rate-limit ones: `qu="concurrent-requests"`. */
export function setConcurrencyHeaders (reply: FastifyReply, mode: NormalisedOptions['headers'], limit: number, remaining: number): void {
  if (mode !== 'draft' && mode !== 'both') return
  appendField(reply, 'ratelimit-policy', `"${CONCURRENCY}";q=${limit};qu="concurrent-requests"`)
  appendField(reply, 'ratelimit', `"${CONCURRENCY}";r=${remaining}`)
}

