/**
 * The limiter's parts for one plugin instance, built once from the normalised options and
 * the store: what the route hooks, the programmatic API and the observers share.
 */
import type { FastifyBaseLogger } from 'fastify'
import { Decider } from './decision/decide.js'
import { StoreGuard } from './decision/guard.js'
import { Identity } from './identity/resolve.js'
import { Slots } from './inference/concurrency.js'
import { Holds } from './inference/delay.js'
import { Planner } from './limits/plan.js'
import { Scales } from './limits/scale.js'
import type { NormalisedOptions } from './options/normalise.js'
import type { RateLimitStore } from './stores/contract.js'

export interface Engine {
  readonly options: NormalisedOptions
  readonly store: RateLimitStore
  readonly planner: Planner
  readonly scales: Scales
  readonly identity: Identity
  readonly decider: Decider
  readonly slots: Slots
  /** Requests held until their slot (`delay`). */
  readonly holds: Holds
}

export function createEngine (options: NormalisedOptions, store: RateLimitStore, log: FastifyBaseLogger): Engine {
  const planner = new Planner(options, log)
  const decider = new Decider(store, new StoreGuard(store, options.storeTimeoutMs, log), options.prefix, log)
  return Object.freeze({
    options,
    store,
    planner,
    scales: new Scales(options, planner, log),
    identity: new Identity(options, log),
    decider,
    slots: new Slots(decider, options.concurrencyLeaseMs),
    holds: new Holds(options.maxDelayed),
  })
}
