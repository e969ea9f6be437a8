/** A store's decision read back into the request's view of it (`request.rateLimit`). */
import { incrementUs, nextUnitUs, remainingUnits, waitUs } from '../gcra/math.js'
import type { Policy, PolicySet } from '../limits/policy.js'
import type { StoreReply } from '../stores/contract.js'
import { CONCURRENCY } from '../limits/plan.js'
import type { PolicyState, RateLimitInfo } from '../types.js'

const ms = (us: number): number => Math.ceil(us / 1000)

/** `delayUs`: the route's delay, which a refused request's wait leaves out (it may be held that long). */
export function toInfo (set: PolicySet, reply: StoreReply, cost: number, incrementsUs: readonly number[], tier: string | null, degraded = false, delayUs = 0): RateLimitInfo {
  const now = reply.nowUs
  const policies = new Array<PolicyState>(set.policies.length)
  let remaining = Infinity
  let resetMs = 0
  let retryAfterMs = 0
  for (let i = 0; i < policies.length; i++) {
    const p = set.policies[i]!
    const tat = reply.tatsUs[i]!
    const left = remainingUnits(tat, now, p)
    const reset = ms(nextUnitUs(tat, now, p))
    const wait = reply.allowed ? 0 : Math.max(0, ms(waitUs(tat, now, incrementsUs[i]!, p) - delayUs))
    policies[i] = { name: p.name, quota: p.quota, burst: p.burst, windowMs: p.windowMs, remaining: left, resetMs: reset, retryAfterMs: wait }
    if (left < remaining || (left === remaining && reset > resetMs)) {
      remaining = left
      resetMs = reset
    }
    if (wait > retryAfterMs) retryAfterMs = wait
  }
  return { allowed: reply.allowed, remaining: remaining === Infinity ? 0 : remaining, resetMs, retryAfterMs, cost, tier, maxCost: set.maxCost, policies, degraded, delayedMs: 0, shadow: false }
}

/** A policy's state in an answer given without reading its bucket: nothing left, and this wait. */
function emptyState (p: Policy, retryAfterMs: number): PolicyState {
  return { name: p.name, quota: p.quota, burst: p.burst, windowMs: p.windowMs, remaining: 0, resetMs: 0, retryAfterMs }
}

/** The answer for a cost that no wait can make fit. */
export function neverFits (set: PolicySet, cost: number, tier: string | null): RateLimitInfo {
  const policies = set.policies.map(p => emptyState(p, incrementUs(cost, p.intervalUs) > p.capacityUs ? Infinity : 0))
  return { allowed: false, remaining: 0, resetMs: 0, retryAfterMs: Infinity, cost, tier, maxCost: set.maxCost, policies, degraded: false, delayedMs: 0, shadow: false }
}

/** A caller's view of its refused concurrency limit, as `request.rateLimit` and for the 429 builder. */
export function concurrencyInfo (limit: number, tier: string | null): RateLimitInfo {
  const policy: PolicyState = { name: CONCURRENCY, quota: limit, burst: limit, windowMs: 0, remaining: 0, resetMs: 0, retryAfterMs: 1000 }
  return { allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 1000, cost: 1, tier, maxCost: limit, policies: [policy], degraded: false, delayedMs: 0, shadow: false }
}

/**
 * The view of a request the plugin answers 503 (the store unavailable, reduced capacity):
 * refused for now, retry in a second, no bucket state. Only shadow mode gives it to a
 * handler; enforced, such a request never reaches one.
 */
export function unavailableInfo (set: PolicySet | undefined, cost: number, tier: string | null, degraded: boolean): RateLimitInfo {
  const policies = (set?.policies ?? []).map(p => emptyState(p, 1000))
  return { allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 1000, cost, tier, maxCost: set?.maxCost ?? 0, policies, degraded, delayedMs: 0, shadow: true }
}

