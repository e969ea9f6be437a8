// What every benchmark app of a limiter shares, wherever it runs (bench/lib/server.js over
// HTTP, bench/inprocess.js in process): the caller's identity, each plugin's options and
// Redis client, and the limits of each kind of app in each plugin's terms.
import { Redis } from 'ioredis'

/** The caller: the x-api-key header the load rotates, else the client address. */
export const identity = (req) => req.headers['x-api-key'] ?? req.ip

/** The limits of each app, in each plugin's terms. */
export const LIMITS = {
  overhead: { '/': { gcra: { max: 1_000_000, per: '1 second' }, frl: { max: 1_000_000_000, timeWindow: 60_000 } } },
  attack: {
    '/good': { gcra: { max: 1_000_000, per: '1 second' }, frl: { max: 1_000_000_000, timeWindow: 60_000 } },
    '/bad': { gcra: { max: 10, per: '1 minute' }, frl: { max: 10, timeWindow: 60_000 } },
  },
  accuracy: { '/': { gcra: { max: 100, per: '1 second', burst: 20 }, frl: { max: 100, timeWindow: 1000 } } },
}

/** A route's config under `limiter` ('bare' and others: none). */
export function routeConfig (limiter, limits) {
  if (limiter.startsWith('frl-')) return { rateLimit: limits.frl }
  if (limiter.startsWith('gcra-')) return { rateLimit: { limits: [limits.gcra] } }
  return {}
}

/**
 * A ready Redis client for `limiter` on the private Redis: @fastify/rate-limit's as its
 * README shows it, fastify-gcra's with the settings its README recommends for a client of
 * one's own; `-pipe` limiters with ioredis auto-pipelining.
 */
export async function redisClientFor (limiter, port) {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    ...(limiter.endsWith('-pipe') ? { enableAutoPipelining: true } : {}),
    ...(limiter.startsWith('gcra-') ? { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 1 } : {}),
  })
  if (client.status !== 'ready') await new Promise((resolve, reject) => { client.once('ready', resolve); client.once('error', reject) })
  return client
}

/**
 * Register `limiter` (bare, frl-memory, frl-redis[-pipe], gcra-memory, gcra-redis[-pipe])
 * on `app`, with `gcra` the plugin as built; answers the Redis client it made, if any.
 */
export async function registerLimiter (app, limiter, { gcra, rateLimit, redisPort }) {
  let client
  if (limiter.startsWith('frl-')) {
    const options = { global: false, keyGenerator: identity, cache: 20_000 }
    if (limiter !== 'frl-memory') options.redis = client = await redisClientFor(limiter, redisPort)
    await app.register(rateLimit, options)
  } else if (limiter.startsWith('gcra-')) {
    const store = limiter === 'gcra-memory' ? 'memory' : { redis: client = await redisClientFor(limiter, redisPort) }
    await app.register(gcra, { store, key: identity })
  } else if (limiter !== 'bare') {
    throw new Error(`unknown limiter ${limiter}`)
  }
  return client
}
