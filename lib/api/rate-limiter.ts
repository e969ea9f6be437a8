/**
 * `fastify.rateLimiter`: the same decisions outside HTTP (websockets, queues, admin tools,
 * tests), through the same path as a request: plan → tier → decision → info.
 */
import { neverFits, toInfo } from '../decision/info.js'
import type { Engine } from '../engine.js'
import { FST_GCRA_INVALID_COST, FST_GCRA_INVALID_KEY, describeKind } from '../errors.js'
import { tierName } from '../identity/resolve.js'
import type { LimitSpec } from '../limits/limit.js'
import type { RoutePlan } from '../limits/plan.js'
import { exceedsCapacity, incrementsFor, namedScope } from '../limits/policy.js'
import { checkedLimits } from '../options/normalise.js'
import type { ConsumeOptions, RateLimitInfo, RateLimiter, RateLimiterStats } from '../types.js'

export function rateLimiter (engine: Engine): RateLimiter {
  const { options, planner, decider, identity, scales, slots } = engine

  const planOf = (limits: readonly LimitSpec[], consume: ConsumeOptions): RoutePlan => {
    const scope = consume.scope ?? 'default'
    const withGlobal = consume.global === true
    return planner.programmatic(`${scope}\n${withGlobal}\n${JSON.stringify(limits)}`, () => ({
      label: `scope ${scope}`,
      scopeId: namedScope(scope),
      limits: checkedLimits(limits, 'rateLimiter limits'),
      withGlobal,
      where: `rateLimiter scope '${scope}'`,
      onStoreError: options.onStoreError,
    }))
  }

  const run = async (key: string, limits: readonly LimitSpec[], cost: number, consume: ConsumeOptions, charge: boolean): Promise<RateLimitInfo> => {
    if (typeof key !== 'string') throw new FST_GCRA_INVALID_KEY(describeKind(key))
    if (typeof cost !== 'number' || !Number.isFinite(cost) || cost < 0) throw new FST_GCRA_INVALID_COST('rateLimiter.consume()', describeKind(cost))
    const tier = tierName(consume.tier)
    const set = planner.setFor(planOf(limits, consume), tier)
    const increments = charge ? incrementsFor(set.policies, cost) : set.unitIncrements
    if (exceedsCapacity(set, increments)) return neverFits(set, cost, tier)
    // a cost of 0 is free: its zero increments always fit, and it is only read, never written
    const decision = await decider.decide(identity.callerOf(key), set, increments, { charge, onStoreError: options.onStoreError })
    if (decision.reply === undefined) throw decision.error
    return toInfo(set, decision.reply, cost, increments, tier, decision.degraded)
  }

  /** The store keys of every bucket of an identity this app knows. */
  const keysOf = (hashedKey: string): string[] => {
    const head = decider.keyHead(hashedKey)
    return [...planner.policyIds()].map(id => head + id)
  }

  return Object.freeze({
    consume: (key: string, limits: readonly LimitSpec[], cost = 1, consume: ConsumeOptions = {}) => run(key, limits, cost, consume, true),
    peek: (key: string, limits: readonly LimitSpec[], consume: ConsumeOptions = {}) => run(key, limits, 1, consume, false),
    setScale: (factor: number, target?: string): void => { scales.set(factor, target) },
    getScale: (target?: string): number => scales.get(target),
    stats: (): RateLimiterStats => {
      const store = engine.store
      return {
        storeKeys: store.remote ? undefined : store.size,
        evictedLive: store.remote ? undefined : store.evictedLive,
        denyCacheHits: decider.denyCache?.hits ?? 0,
        openBreakers: decider.guard.states().filter(([, state]) => state !== 'closed').length,
        slotsHeld: slots.held,
      }
    },
    reset: async (key: string): Promise<void> => {
      if (typeof key !== 'string') throw new FST_GCRA_INVALID_KEY(describeKind(key))
      const hashed = identity.callerOf(key).key
      const keys = keysOf(hashed)
      // a refusal in flight now was decided before the delete: forget() makes the deny
      // cache ignore every refusal sent before this moment, whenever it arrives
      decider.forget(hashed, keys)
      await decider.guard.bounded(engine.store.delete(keys))
    },
  })
}
