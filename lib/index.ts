/**
 * fastify-gcra: GCRA rate limits from route config, in memory or in Redis.
 * The entry only wires: options, the engine, decorators, the onRoute hook, lifecycle.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify'
import fp from 'fastify-plugin'
import { rateLimiter } from './api/rate-limiter.js'
import { createEngine } from './engine.js'
import { FST_GCRA_INVALID_OPTION } from './errors.js'
import { routeHooks } from './http/hooks.js'
import { attachHooks, RoutePlanner } from './http/route.js'
import { UnseenRoutes } from './http/unseen-routes.js'
import { settlementOf } from './inference/settle.js'
import { OpenApiDocs } from './observe/openapi.js'
import { observeRoute } from './observe/outcome.js'
import { setUpObservers } from './observe/setup.js'
import { normaliseOptions } from './options/normalise.js'
import type { FastifyGcraOptions } from './options/types.js'
import { RedisStore } from './stores/redis.js'
import { createStore, startRedis } from './stores/redis-client.js'
import { kState } from './symbols.js'
import './types.js'

const plugin: FastifyPluginAsync<FastifyGcraOptions> = async (fastify: FastifyInstance, rawOptions) => {
  const options = normaliseOptions(rawOptions)
  const store = createStore(options)
  const engine = createEngine(options, store, fastify.log)

  fastify.decorateRequest('rateLimit', null)
  fastify.decorateRequest('rateLimitKey', null)
  fastify.decorateRequest('rateLimitTier', null)
  fastify.decorateRequest(kState, null)
  fastify.decorateReply('rateLimit', { getter (this: FastifyReply) { return settlementOf(this, engine.decider) } })
  fastify.decorate('rateLimiter', rateLimiter(engine))
  const sinks = await setUpObservers(fastify, engine)
  const docs = options.openapi === undefined ? undefined : new OpenApiDocs(options)
  const routes = new RoutePlanner(engine)
  const unseen = new UnseenRoutes(fastify)

  fastify.addHook('onRoute', (route) => {
    unseen.saw(route)
    const plan = routes.plan(route)
    if (plan === undefined) return
    attachHooks(route, routeHooks(engine, plan))
    if (sinks.length > 0) attachHooks(route, { onResponse: observeRoute(plan.label, options.tiers, sinks) })
    docs?.add(route, plan)
  })
  // a route with config.rateLimit that this hook never saw would never be limited: ready() fails naming it
  fastify.addHook('onReady', async () => { unseen.check() })

  if (options.pressureScale !== undefined) {
    // @fastify/under-pressure decorates the instance; it may be registered after this plugin
    fastify.addHook('onReady', async () => {
      const check = (fastify as FastifyInstance & { isUnderPressure?: () => boolean }).isUnderPressure
      if (typeof check !== 'function') {
        throw new FST_GCRA_INVALID_OPTION('options.pressureScale', '@fastify/under-pressure registered on this instance (fastify.isUnderPressure)', 'no isUnderPressure decorator')
      }
      engine.scales.usePressure(() => check.call(fastify))
    })
  }
  if (store instanceof RedisStore) await startRedis(fastify, store, typeof (options.store as { redis: unknown }).redis === 'string', engine.decider)
  // after every route's serializers are compiled: the response schemas added for the
  // documentation never change a response
  if (docs !== undefined) fastify.addHook('onReady', async () => { docs.apply() })
  fastify.addHook('onClose', async () => {
    engine.slots.stop()
    await store.close()
  })
}

/** The plugin. Register it before the routes it limits. */
export const fastifyGcra = fp(plugin, { fastify: '5.x', name: 'fastify-gcra' })
export default fastifyGcra

export {
  FST_GCRA_INVALID_COST, FST_GCRA_INVALID_KEY, FST_GCRA_INVALID_OPTION, FST_GCRA_INVALID_SCALE, FST_GCRA_INVALID_SETTLE, FST_GCRA_INVALID_TIER,
  FST_GCRA_NO_PROM_CLIENT, FST_GCRA_STORE_REPLY, FST_GCRA_STORE_TIMEOUT, FST_GCRA_STORE_UNAVAILABLE, FST_GCRA_UNSEEN_ROUTE,
} from './errors.js'
export { ipIdentity, hashIdentity } from './identity/hash.js'
export { parseDuration, parseLimitString, type Limit, type LimitObject, type LimitSpec } from './limits/limit.js'
export type {
  ConcurrencySetting, CostSetting, FastifyGcraOptions, LogRefusalsOptions, MetricsOptions, MetricsRegistry, OpenApiOptions,
  RouteRateLimitConfig, ScaleFunction, SettleFunction, StoreErrorPolicy,
} from './options/types.js'
export type { RequestOutcome } from './observe/outcome.js'
export type { ConsumeOptions, PolicyState, RateLimitContext, RateLimitInfo, RateLimiter, RateLimiterStats, RateLimitSettlement } from './types.js'
