/**
 * Route plans: a route's (or a programmatic scope's) limits turned into policy sets for
 * every tier once, at registration, so that a request only looks its set up.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { FST_GCRA_INVALID_COST, FST_GCRA_INVALID_OPTION, describeKind } from '../errors.js'
import { hashIdentity } from '../identity/hash.js'
import type { ConcurrencySettings, NormalisedOptions } from '../options/normalise.js'
import type { CostSetting, ScaleFunction, SettleFunction, StoreErrorPolicy } from '../options/types.js'
import { boundedMap, firstTime } from '../util/bounded.js'
import { isThenable } from '../util/maybe.js'
import type { Limit } from './limit.js'
import { buildPolicy, buildSet, GLOBAL_SCOPE, type Policy, type PolicySet } from './policy.js'

/** The name of a concurrency limit in the rate-limit fields. */
export const CONCURRENCY = 'concurrency'

/** Everything one route (or one programmatic limit set) needs per request. */
export interface RoutePlan {
  /** 'POST /batch', for messages. */
  readonly label: string
  readonly cost: CostSetting
  /** The set for callers without a (known) tier: multiplier 1. */
  readonly base: PolicySet
  readonly tiers: ReadonlyMap<string, PolicySet>
  /** What this route's requests get while the store fails. */
  readonly onStoreError: StoreErrorPolicy
  /** The scope of the route's buckets (what `setScale` names). */
  readonly scopeId: string
  readonly concurrency: ConcurrencyPlan | undefined
  readonly settle: SettleFunction | undefined
  readonly scale: ScaleFunction | undefined
  /** How long a request may be held until its slot, in µs (0: refused at once). */
  readonly delayUs: number
  /** Decided and reported as if enforced, but always served. */
  readonly shadow: boolean
  /** The set of a tier at a scale below 1 (in hundredths), built once and kept. */
  scaled(tier: string | null, hundredths: number): PolicySet
}

/** A route's concurrency limits, ready for requests. */
export interface ConcurrencyPlan {
  /** Slots per caller without a (known) tier; undefined: only the route's capacity. */
  readonly perCaller: number | undefined
  /** Slots per caller of each configured tier. */
  readonly tiers: ReadonlyMap<string, number>
  /** Slots of the route for everyone. */
  readonly route: number | undefined
  /** Suffix of the caller slots' key; the route's key. */
  readonly id: string
  readonly routeKey: string
}

/** What a plan is built from. */
export interface PlanSpec {
  readonly label: string
  readonly scopeId: string
  readonly limits: readonly Limit[]
  /** Limits of named tiers on this route, used as written. */
  readonly tierLimits?: ReadonlyMap<string, readonly Limit[]>
  readonly cost?: CostSetting
  /** Whether the plugin's `global` limits apply too. */
  readonly withGlobal: boolean
  /** The option path named by errors. */
  readonly where: string
  readonly onStoreError: StoreErrorPolicy
  readonly concurrency?: ConcurrencySettings
  readonly settle?: SettleFunction
  readonly scale?: ScaleFunction
  /** ms; default 0. */
  readonly delayMs?: number
  readonly shadow?: boolean
}

// programmatic limit sets kept ready (dynamic scopes such as `room-${id}` must not grow memory)
const MAX_PROGRAMMATIC_PLANS = 1000

export class Planner {
  readonly #opts: NormalisedOptions
  readonly #log: FastifyBaseLogger
  /** Scope id → the signature of its limits: routes sharing a scope must declare the same. */
  readonly #scopes = new Map<string, string>()
  /** Policy ids of the routes and global limits: what reset() forgets, with the cached programmatic ones. */
  readonly #routePolicyIds = new Set<string>()
  /** Scope ids of the routes, by route label and by scope name (what `setScale` accepts). */
  readonly #targets = new Map<string, string>()
  readonly #programmatic = boundedMap<RoutePlan>(MAX_PROGRAMMATIC_PLANS)
  readonly #firstUnknownTier = firstTime()

  constructor (options: NormalisedOptions, log: FastifyBaseLogger) {
    this.#opts = options
    this.#log = log
  }

  /** The plan of a route: registered, so that its scope, reset and scale target are known. */
  route (spec: PlanSpec): RoutePlan {
    const { scopeId } = spec
    const c = spec.concurrency
    const signature = JSON.stringify([spec.limits, [...(spec.tierLimits ?? [])], c === undefined ? null : [c.perCaller, c.route, [...c.tiers]]])
    const known = this.#scopes.get(scopeId)
    if (known !== undefined && known !== signature) {
      throw new FST_GCRA_INVALID_OPTION(spec.where, `the same limits, tier limits and concurrency as the other routes of scope '${scopeId.replace(/^\w+:/, '')}'`, 'different ones')
    }
    const plan = this.#build(spec)
    this.#scopes.set(scopeId, signature)
    for (const set of [plan.base, ...plan.tiers.values()]) for (const p of set.policies) this.#routePolicyIds.add(p.id)
    this.#targets.set(spec.label, scopeId)
    if (scopeId.startsWith('scope:')) this.#targets.set(scopeId.slice('scope:'.length), scopeId)
    return plan
  }

  /**
   * The plan of limits given at run time, kept ready by `id`: limits with other names are
   * other buckets, so one scope may carry several sets.
   */
  programmatic (id: string, make: () => PlanSpec): RoutePlan {
    let plan = this.#programmatic.get(id)
    if (plan === undefined) {
      plan = this.#build(make())
      this.#programmatic.set(id, plan)
    }
    return plan
  }

  /** The set for a tier. An unknown tier gets the base set (multiplier 1), with one warning per name. */
  setFor (plan: RoutePlan, tier: string | null): PolicySet {
    if (tier === null) return plan.base
    const set = plan.tiers.get(tier)
    if (set !== undefined) return set
    if (this.#firstUnknownTier(tier)) {
      this.#log.warn({ tier: tier.slice(0, 64) }, 'fastify-gcra: the tier resolver returned a tier that is not in options.tiers; limiting it as a caller without a tier (multiplier 1)')
    }
    return plan.base
  }

  /** The set of a request: its tier's, at its scale (hundredths). */
  setAt (plan: RoutePlan, tier: string | null, hundredths: number): PolicySet {
    return hundredths === 100 ? this.setFor(plan, tier) : plan.scaled(tier, hundredths)
  }

  /** The scope id a route label ('POST /predict') or a scope name stands for. */
  target (name: string): string | undefined {
    return this.#targets.get(name)
  }

  /** The policy ids of every bucket this app knows (routes, global, cached programmatic sets). */
  policyIds (): Set<string> {
    const ids = new Set(this.#routePolicyIds)
    for (const id of this.#programmatic.keys()) {
      const plan = this.#programmatic.get(id)
      if (plan !== undefined) for (const set of [plan.base, ...plan.tiers.values()]) for (const p of set.policies) ids.add(p.id)
    }
    return ids
  }

  #build (spec: PlanSpec): RoutePlan {
    const { scopeId, limits, where } = spec
    const tierLimits = spec.tierLimits ?? new Map<string, readonly Limit[]>()
    const cost = spec.cost ?? 1
    const fixed = typeof cost === 'number' ? cost : undefined
    const global = spec.withGlobal ? this.#opts.global : []
    const withSlots = spec.concurrency !== undefined
    const make = (own: readonly Limit[], ownMultiplier: number, globalMultiplier: number): PolicySet => {
      const policies: Policy[] = [
        ...own.map(l => buildPolicy(l, ownMultiplier, scopeId)),
        ...global.map(l => buildPolicy(l, globalMultiplier, GLOBAL_SCOPE)),
      ]
      if (policies.length === 0 && !withSlots) {
        throw new FST_GCRA_INVALID_OPTION(where, 'at least one limit: the route\'s own, the plugin\'s limits or global (or a concurrency limit)', 'none')
      }
      const names = new Set<string>()
      // the concurrency limit has its own item in the rate-limit fields
      if (withSlots) names.add(CONCURRENCY)
      for (const p of policies) {
        if (p.name === CONCURRENCY && withSlots) throw new FST_GCRA_INVALID_OPTION(where, `limit names other than '${CONCURRENCY}' on a route with a concurrency limit`, `'${CONCURRENCY}'`)
        if (names.has(p.name)) throw new FST_GCRA_INVALID_OPTION(where, 'limit names distinct from the global limits\' names', `'${p.name}' twice`)
        names.add(p.name)
      }
      return buildSet(policies, fixed)
    }
    const tiers = new Map<string, PolicySet>()
    for (const [name, multiplier] of this.#opts.tiers) {
      const override = tierLimits.get(name)
      tiers.set(name, override === undefined ? make(limits, multiplier, multiplier) : make(override, 1, multiplier))
    }
    const base = make(limits, 1, 1)
    // sets at a lower scale, built on first use: the route's own limits (and its tier's) at
    // the tier's multiplier times the scale; the global limits are quotas, charged and
    // advertised at scale 1 (the same buckets, capacity and field as at full scale)
    const scaledSets = new Map<string, PolicySet>()
    const scaled = (tier: string | null, hundredths: number): PolicySet => {
      const known = tier !== null && this.#opts.tiers.has(tier) ? tier : null
      const id = `${known ?? ''}\n${hundredths}`
      let set = scaledSets.get(id)
      if (set === undefined) {
        const factor = hundredths / 100
        const multiplier = known === null ? 1 : this.#opts.tiers.get(known)!
        const override = known === null ? undefined : tierLimits.get(known)
        set = override === undefined ? make(limits, multiplier * factor, multiplier) : make(override, factor, multiplier)
        scaledSets.set(id, set)
      }
      return set
    }
    return {
      label: spec.label, cost, base, tiers, onStoreError: spec.onStoreError, scopeId, scaled,
      concurrency: spec.concurrency === undefined ? undefined : this.#concurrencyPlan(scopeId, spec.concurrency),
      settle: spec.settle,
      scale: spec.scale,
      delayUs: (spec.delayMs ?? 0) * 1000,
      shadow: spec.shadow ?? false,
    }
  }

  #concurrencyPlan (scopeId: string, settings: ConcurrencySettings): ConcurrencyPlan {
    const tiers = new Map<string, number>()
    for (const [name, multiplier] of this.#opts.tiers) {
      const own = settings.tiers.get(name)
      if (own !== undefined) tiers.set(name, own)
      else if (settings.perCaller !== undefined) tiers.set(name, Math.max(1, Math.floor(settings.perCaller * multiplier)))
    }
    const id = hashIdentity(`${scopeId}\nconcurrency`).slice(0, 12)
    return Object.freeze({ perCaller: settings.perCaller, tiers, route: settings.route, id, routeKey: `${this.#opts.prefix}:{${id}}:route` })
  }
}

/** A request's cost under a route's cost function: a finite number ≥ 0, else the route's error. */
export async function costOf (plan: RoutePlan, request: FastifyRequest): Promise<number> {
  let value: unknown
  try {
    value = (plan.cost as (r: FastifyRequest) => unknown)(request)
    if (isThenable(value)) value = await value
  } catch (error) {
    // the cause carries the detail; the logger prints its message after ours
    throw new FST_GCRA_INVALID_COST(plan.label, 'an exception', { cause: error })
  }
  // 0 is a free request (an empty batch); what is negative or not a number is the server's bug
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new FST_GCRA_INVALID_COST(plan.label, describeKind(value))
  return value
}
