/**
 * Policies: a route's limits (and the global ones) turned into GCRA buckets for each
 * tier at registration, with their store-key suffixes and `RateLimit-Policy` text, so a
 * request only looks its set up.
 */
import { incrementUs, maxCost, toBucket, type Bucket } from '../gcra/math.js'
import { hashIdentity } from '../identity/hash.js'
import { advertise } from './advertise.js'
import type { Limit } from './limit.js'

export interface Policy extends Bucket {
  readonly name: string
  /** Suffix of this policy's store keys: a hash of its scope and name. */
  readonly id: string
  /** max · multiplier. */
  readonly quota: number
  /** burst · multiplier. */
  readonly burst: number
  readonly windowMs: number
  /**
   * The `q` of `RateLimit-Policy` (and `X-RateLimit-Limit`): an integer, at least the
   * capacity (so ≥ any `r`), with `q / w` the true rate `quota / windowMs`.
   */
  readonly advertisedQuota: number
  /** The `w` of `RateLimit-Policy`: whole seconds ≥ 1. */
  readonly advertisedWindowS: number
}

/** Every policy one request is checked against, for one tier. */
export interface PolicySet {
  /** Unique in this process: names the set in the local deny cache. */
  readonly id: number
  readonly policies: readonly Policy[]
  readonly capacitiesUs: readonly number[]
  /** The largest cost this set can ever admit. */
  readonly maxCost: number
  /** The `RateLimit-Policy` field value. */
  readonly policyField: string
  /** Increments of a cost of 1 (the early check of body-cost routes). */
  readonly unitIncrements: readonly number[]
  /** Increments of the route's fixed cost, when it has one (zeros for a free route). */
  readonly fixedIncrements: readonly number[] | undefined
}

export const GLOBAL_SCOPE = 'global'

/** Scope ids never collide: a named scope, a route's own scope and the global one differ in prefix. */
export const namedScope = (name: string): string => `scope:${name}`
export const routeScope = (label: string): string => `route:${label}`

function quoted (name: string): string {
  return `"${name}"`
}

export function buildPolicy (limit: Limit, multiplier: number, scopeId: string): Policy {
  const bucket = toBucket(limit.max, limit.perMs, limit.burst, multiplier)
  const advertised = advertise(limit.max, limit.perMs, limit.burst, multiplier, Math.floor(maxCost(bucket)))
  return Object.freeze({
    ...bucket,
    name: limit.name,
    id: hashIdentity(`${scopeId}\n${limit.name}`).slice(0, 12),
    quota: limit.max * multiplier,
    burst: limit.burst * multiplier,
    windowMs: limit.perMs,
    advertisedQuota: advertised.quota,
    advertisedWindowS: advertised.windowS,
  })
}

let nextSetId = 1

/** What a request of `cost` adds to each policy's TAT: c · T, in whole µs (0 for a free request). */
export function incrementsFor (policies: readonly Policy[], cost: number): number[] {
  return policies.map(p => incrementUs(cost, p.intervalUs))
}

export function buildSet (policies: readonly Policy[], fixedCost: number | undefined): PolicySet {
  const increments = (cost: number): number[] => incrementsFor(policies, cost)
  return Object.freeze({
    id: nextSetId++,
    policies,
    capacitiesUs: policies.map(p => p.capacityUs),
    maxCost: policies.reduce((least, p) => Math.min(least, maxCost(p)), Infinity),
    policyField: policies.map(p => `${quoted(p.name)};q=${p.advertisedQuota};w=${p.advertisedWindowS}`).join(', '),
    unitIncrements: increments(1),
    fixedIncrements: fixedCost === undefined ? undefined : increments(fixedCost),
  })
}

/** Whether some policy can never admit these increments (a 413, not a 429). */
export function exceedsCapacity (set: PolicySet, incrementsUs: readonly number[]): boolean {
  for (let i = 0; i < incrementsUs.length; i++) {
    if (incrementsUs[i]! > set.capacitiesUs[i]!) return true
  }
  return false
}
