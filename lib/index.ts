/**
 * fastify-gcra: GCRA rate limits from route config, in memory or in Redis.
 * The entry stays thin: options, decorators, the onRoute hook and wiring.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, RouteOptions } from 'fastify'
import { FST_GCRA_INVALID_OPTION } from './errors.js'
import fp from 'fastify-plugin'
import { kCaller, routeHooks, settlementOf } from './hooks.js'
import { Limiter } from './limiter.js'
import { normaliseOptions, normaliseRouteConfig, type FastifyGcraOptions, type NormalisedOptions } from './options.js'
import { setUpObservers } from './observe.js'
import { OpenApiDocs } from './openapi.js'
import { observeRoute } from './outcome.js'
import { namedScope, routeScope } from './policy.js'
import { MemoryStore } from './stores/memory.js'
import { evictionPolicies, RedisStore, riskyClientSettings } from './stores/redis.js'
import type { RateLimitStore } from './stores/store.js'
import './types.js'

/** Wait for `promise`, but at most `ms`; it goes on in the background after that. */
async function within (promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([promise, new Promise(resolve => { timer = setTimeout(resolve, ms) })])
  clearTimeout(timer)
}

/** Resolves when an ioredis client is ready (at once if it is). */
function whenReady (client: RedisStore['client']): Promise<void> {
  if (client.status === 'ready') return Promise.resolve()
  return new Promise(resolve => client.once('ready', () => resolve()))
}

function createStore (options: NormalisedOptions): RateLimitStore {
  const setting = options.store
  if (setting.kind === 'memory') return new MemoryStore({ maxKeys: setting.maxKeys })
  return typeof setting.redis === 'string' ? RedisStore.fromUrl(setting.redis) : new RedisStore(setting.redis, false)
}

type HookList = RouteOptions['onRequest']

function appendHook<H> (existing: H | H[] | undefined, hook: H): H[] {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}

/** Where a route is: URL plus constraints (routes may differ only by host or version). */
function routePlace (route: RouteOptions): string {
  const constraints = route.constraints === undefined || Object.keys(route.constraints).length === 0 ? '' : ` ${JSON.stringify(route.constraints)}`
  return `${route.url}${constraints}`
}

const plugin: FastifyPluginAsync<FastifyGcraOptions> = async (fastify: FastifyInstance, rawOptions) => {
  const options = normaliseOptions(rawOptions)
  const store = createStore(options)
  const limiter = new Limiter(options, store, fastify.log)

  fastify.decorateRequest('rateLimit', null)
  fastify.decorateRequest('rateLimitKey', null)
  fastify.decorateRequest('rateLimitTier', null)
  fastify.decorateRequest(kCaller, null)
  fastify.decorateReply('rateLimit', { getter (this: FastifyReply) { return settlementOf(this) } })
  fastify.decorate('rateLimiter', limiter.api())
  const sinks = await setUpObservers(fastify, options, limiter)
  const docs = options.openapi === undefined ? undefined : new OpenApiDocs(options)

  if (options.pressureScale !== undefined) {
    // @fastify/under-pressure decorates the instance; it may be registered after this plugin
    fastify.addHook('onReady', async () => {
      const check = (fastify as FastifyInstance & { isUnderPressure?: () => boolean }).isUnderPressure
      if (typeof check !== 'function') {
        throw new FST_GCRA_INVALID_OPTION('options.pressureScale', '@fastify/under-pressure registered on this instance (fastify.isUnderPressure)', 'no isUnderPressure decorator')
      }
      limiter.usePressure(() => check.call(fastify))
    })
  }

  // The HEAD route Fastify adds for a GET route is a copy of its options, handler included;
  // it shares the GET route's buckets. handler → place → scope id of the GET route.
  const getScopes = new WeakMap<object, Map<string, string>>()

  fastify.addHook('onRoute', (route) => {
    const config = (route.config as { rateLimit?: unknown } | undefined)?.rateLimit
    if (config === false) return
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const place = routePlace(route)
    const label = `${methods.join(',')} ${place}`
    const where = `route ${label}: config.rateLimit`
    const settings = config === undefined ? undefined : normaliseRouteConfig(config, where, options.tiers)
    const limits = settings?.limits ?? options.limits ?? []
    // no config and nothing app-wide: the route is simply not limited
    if (settings === undefined && limits.length === 0 && options.global.length === 0) return
    let scopeId: string
    if (settings?.scope !== undefined) {
      scopeId = namedScope(settings.scope)
    } else {
      const fromGet = methods.length === 1 && methods[0] === 'HEAD' ? getScopes.get(route.handler)?.get(place) : undefined
      scopeId = fromGet ?? routeScope(label)
      if (methods.includes('GET')) {
        const places = getScopes.get(route.handler) ?? new Map<string, string>()
        places.set(place, scopeId)
        getScopes.set(route.handler, places)
      }
    }
    const plan = limiter.plan(label, scopeId, limits, settings?.tiers ?? new Map(), settings?.cost ?? 1, true, where, false, settings?.onStoreError ?? options.onStoreError, {
      concurrency: settings?.concurrency,
      settle: settings?.settle,
      scale: settings?.scale,
    })
    const hooks = routeHooks(limiter, options, plan)
    if (hooks.onRequest !== undefined) route.onRequest = appendHook(route.onRequest as HookList, hooks.onRequest) as RouteOptions['onRequest']
    if (hooks.preHandler !== undefined) route.preHandler = appendHook(route.preHandler, hooks.preHandler) as RouteOptions['preHandler']
    if (hooks.onResponse !== undefined) route.onResponse = appendHook(route.onResponse, hooks.onResponse) as RouteOptions['onResponse']
    if (sinks.length > 0) route.onResponse = appendHook(route.onResponse, observeRoute(label, plan.onStoreError, options.tiers, sinks)) as RouteOptions['onResponse']
    docs?.add(route, plan)
  })

  if (store instanceof RedisStore) {
    const client = store.client
    if (typeof (options.store as { redis: unknown }).redis === 'string') {
      // a client of our own: its connection errors are the outage the limiter logs once;
      // each reconnect attempt goes to debug, not to the console
      client.on('error', (error: unknown) => { fastify.log.debug({ err: error }, 'fastify-gcra: Redis connection error') })
      // connect now, so the first requests do not meet a closed connection; but a Redis
      // that accepts and never answers must not hold start-up: a second, then background
      const connecting = (client.connect() as Promise<void>).catch((error: unknown) => {
        fastify.log.warn({ err: error }, 'fastify-gcra: could not connect to Redis yet; retrying in the background')
      })
      await within(connecting, 1000)
    } else {
      const risky = riskyClientSettings(client)
      if (risky.length > 0) fastify.log.warn({ set: risky }, 'fastify-gcra: the Redis client given to the plugin may run a decision twice or late; set ' + risky.join('; '))
    }
    // Redis that evicts keys silently resets limits: say so once, when the client is
    // ready (at most a second of start-up; a later answer is still reported)
    fastify.addHook('onReady', async () => {
      // the deny cache starts once refunds from other instances can be heard
      const listening = limiter.listen()
      const check = whenReady(client).then(() => evictionPolicies(client)).then((policies) => {
        const evicting = [...new Set(policies.filter(p => p !== 'noeviction'))]
        if (evicting.length > 0) {
          fastify.log.warn({ maxmemoryPolicy: evicting }, `fastify-gcra: Redis maxmemory-policy is ${evicting.join(', ')}, not noeviction: under memory pressure Redis may evict buckets, which resets those limits`)
        }
      }, () => {})
      await within(Promise.all([listening, check]), 1000)
    })
  }

  // after every route's serializers are compiled: the response schemas added for the
  // documentation never change a response
  if (docs !== undefined) fastify.addHook('onReady', async () => { docs.apply() })

  fastify.addHook('onClose', async () => {
    limiter.stop()
    await store.close()
  })
}

/** The plugin. Register it before the routes it limits. */
export const fastifyGcra = fp(plugin, { fastify: '5.x', name: 'fastify-gcra' })
export default fastifyGcra

export {
  FST_GCRA_INVALID_COST, FST_GCRA_INVALID_KEY, FST_GCRA_INVALID_OPTION, FST_GCRA_INVALID_SCALE, FST_GCRA_INVALID_SETTLE, FST_GCRA_INVALID_TIER,
  FST_GCRA_NO_PROM_CLIENT, FST_GCRA_STORE_REPLY, FST_GCRA_STORE_TIMEOUT, FST_GCRA_STORE_UNAVAILABLE,
} from './errors.js'
export { ipIdentity, hashIdentity } from './identity.js'
export { parseDuration, parseLimitString, type Limit, type LimitObject, type LimitSpec } from './limit.js'
export { MemoryStore, type MemoryStoreOptions } from './stores/memory.js'
export { RedisStore } from './stores/redis.js'
export type { RateLimitStore, SlotReply, StoreReply } from './stores/store.js'
export type {
  ConcurrencySetting, CostSetting, FastifyGcraOptions, LogRefusalsOptions, MetricsOptions, MetricsRegistry, OpenApiOptions,
  RouteRateLimitConfig, ScaleFunction, SettleFunction,
} from './options.js'
export type { RequestOutcome } from './outcome.js'
export type { ConsumeOptions, PolicyState, RateLimitContext, RateLimitInfo, RateLimiter, RateLimiterStats, RateLimitSettlement } from './types.js'
