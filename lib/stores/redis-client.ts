/**
 * The Redis side of a plugin instance's life: the store for the `store` option (a client
 * of its own from a URL, or the user's client), a bounded connect at start, warnings about
 * client settings that can run a decision twice and about evicting Redis, and the refund
 * listener once the app is ready.
 */
import type { FastifyInstance } from 'fastify'
import { Redis, type Cluster, type RedisOptions } from 'ioredis'
import type { Decider } from '../decision/decide.js'
import type { NormalisedOptions } from '../options/normalise.js'
import { within, withTimeout } from '../util/timeout.js'
import type { RateLimitStore } from './contract.js'
import { MemoryStore } from './memory.js'
import { isCluster, RedisStore } from './redis.js'

/**
 * Settings for a client the plugin creates from a URL: fail fast while disconnected
 * instead of queueing, and never re-send a decision after a reconnect (a GCRA script is
 * not idempotent: a replay would charge twice).
 */
export const OWN_CLIENT_OPTIONS: RedisOptions = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 1,
  connectTimeout: 2000,
  // reconnect soon after Redis comes back (ioredis' default waits up to 2 s)
  retryStrategy: (times: number) => Math.min(times * 50, 250),
  // visible in CLIENT LIST, so an operator can tell the limiter's connections apart
  connectionName: 'fastify-gcra',
  lazyConnect: true,
}

/** The store the options ask for. */
export function createStore (options: NormalisedOptions): RateLimitStore {
  const setting = options.store
  if (setting.kind === 'memory') return new MemoryStore({ maxKeys: setting.maxKeys })
  return typeof setting.redis === 'string'
    ? new RedisStore(new Redis(setting.redis, OWN_CLIENT_OPTIONS), true, options.storeTimeoutMs)
    : new RedisStore(setting.redis, false, options.storeTimeoutMs)
}

/** Resolves when an ioredis client is ready (at once if it is); `keep` gets the listener, for whoever must remove it if that never happens. */
function whenReady (client: Redis | Cluster, keep: (listener: () => void) => void): Promise<void> {
  if (client.status === 'ready') return Promise.resolve()
  return new Promise((resolve) => {
    const listener = (): void => { resolve() }
    keep(listener)
    client.once('ready', listener)
  })
}

/** The longest start-up waits for the plugin's own client to connect, ms. */
const CONNECT_WAIT_MS = 1000

/** Where a cluster startup node points: host:port, without any credentials a URL holds. */
function nodeAddress (node: unknown): string {
  if (typeof node === 'number') return `localhost:${node}`
  if (typeof node === 'string') return node.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/^[^@/]*@/, '').replace(/\/.*$/, '')
  const { host, port } = (node ?? {}) as { host?: string, port?: number }
  return `${host ?? 'localhost'}:${port ?? 6379}`
}

/** Where a client connects, for the logs: host:port (or the socket path), never a password. */
export function storeAddress (client: Redis | Cluster): string {
  if (isCluster(client)) {
    const nodes = (client as unknown as { startupNodes?: unknown }).startupNodes
    return Array.isArray(nodes) && nodes.length > 0 ? nodes.map(nodeAddress).join(',') : 'a Redis Cluster'
  }
  const { host, port, path } = client.options
  return typeof path === 'string' && path !== '' ? path : `${host ?? 'localhost'}:${port ?? 6379}`
}

/** Connect (or check) a Redis store at registration, and start hearing refunds when the app is ready. */
export async function startRedis (fastify: FastifyInstance, store: RedisStore, ownClient: boolean, decider: Decider): Promise<void> {
  const client = store.client
  const address = storeAddress(client)
  // a Redis out of reach at start is said once, loudly: the app serves meanwhile, under
  // onStoreError; reconnect attempts and each failed call go to debug and to the breaker's log
  let told = false
  const answers = (): void => { fastify.log.info({ store: address }, `fastify-gcra: Redis at ${address} answers now`) }
  const unreachable = (reason: unknown): void => {
    if (told) return
    told = true
    const why = (reason as { message?: unknown } | null)?.message
    fastify.log.error({ err: reason, store: address }, `fastify-gcra: cannot reach Redis at ${address} (${typeof why === 'string' && why !== '' ? why : String(reason)}); until it answers, requests follow onStoreError (by default 'local': each instance limits them on its own, in memory)`)
    client.once('ready', answers)
  }
  // a client given to the plugin outlives the app: leave no listener on it, also when it
  // never became ready (the start-up check below waits for that)
  let waitingForReady: (() => void) | undefined
  fastify.addHook('onClose', async () => {
    client.off('ready', answers)
    if (waitingForReady !== undefined) client.off('ready', waitingForReady)
  })
  if (ownClient) {
    // a client of our own: each reconnect attempt goes to debug, not to the console
    client.on('error', (error: unknown) => { fastify.log.debug({ err: error }, 'fastify-gcra: Redis connection error') })
    // the first error says why (connect() itself only rejects with 'Connection is closed.')
    let firstError: unknown
    const remember = (error: unknown): void => { firstError ??= error }
    client.on('error', remember)
    // connect now, so the first requests do not meet a closed connection; but a Redis
    // that accepts and never answers must not hold start-up: a second, then background
    const connecting = (client.connect() as Promise<void>).then(() => undefined, (error: unknown) => firstError ?? error)
    const failed = await withTimeout(connecting, CONNECT_WAIT_MS, () => firstError ?? new Error(`no answer within ${CONNECT_WAIT_MS} ms`))
    client.off('error', remember)
    if (failed !== undefined) unreachable(failed)
  } else {
    const risky = riskyClientSettings(client)
    if (risky.length > 0) fastify.log.warn({ set: risky }, 'fastify-gcra: the Redis client given to the plugin may run a decision twice or late; set ' + risky.join('; '))
    if (client.status !== 'ready') {
      // a client given not ready yet: an error before it is ready is Redis out of reach at start
      const stop = (): void => {
        client.off('error', onError)
        client.off('ready', stop)
      }
      const onError = (error: unknown): void => {
        stop()
        unreachable(error)
      }
      client.on('error', onError)
      client.on('ready', stop)
      fastify.addHook('onClose', async () => { stop() })
    }
  }
  // Redis that evicts keys silently resets limits: say so once, when the client is
  // ready (at most a second of start-up; a later answer is still reported)
  fastify.addHook('onReady', async () => {
    // the deny cache starts once refunds from other instances can be heard
    const listening = decider.listen()
    const check = whenReady(client, (listener) => { waitingForReady = listener }).then(() => evictionPolicies(client)).then((policies) => {
      const evicting = [...new Set(policies.filter(p => p !== 'noeviction'))]
      if (evicting.length > 0) {
        fastify.log.warn({ maxmemoryPolicy: evicting }, `fastify-gcra: Redis maxmemory-policy is ${evicting.join(', ')}, not noeviction: under memory pressure Redis may evict buckets, which resets those limits`)
      }
    }, () => {})
    await within(Promise.all([listening, check]), 1000)
  })
}

/** Client settings that can make a decision run twice or late, with what to set instead. */
export function riskyClientSettings (client: Redis | Cluster): string[] {
  // a Cluster passes redisOptions to the connections it opens
  const options: RedisOptions | undefined = isCluster(client) ? client.options.redisOptions : client.options
  const risky: string[] = []
  if (options?.autoResendUnfulfilledCommands !== false) risky.push('autoResendUnfulfilledCommands: false (a decision re-sent after a reconnect charges twice)')
  if ((client.options as { enableOfflineQueue?: boolean }).enableOfflineQueue !== false) risky.push('enableOfflineQueue: false (queued decisions run late, after their requests were answered)')
  // a Cluster re-sends what was in flight on a closed node connection, whatever redisOptions say
  if (isCluster(client) && (client.options.retryDelayOnFailover ?? 100) > 0) risky.push('retryDelayOnFailover: 0 in the Cluster options (a Cluster re-sends a decision that was in flight on a failing node)')
  return risky
}

/** `maxmemory-policy` of every master, as far as CONFIG GET answers (managed Redis may refuse it). */
export async function evictionPolicies (client: Redis | Cluster): Promise<string[]> {
  const nodes = isCluster(client) ? client.nodes('master') : [client]
  const answers = await Promise.all(nodes.map(async node => {
    try {
      const reply = await node.config('GET', 'maxmemory-policy') as unknown
      return Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : undefined
    } catch {
      return undefined
    }
  }))
  return answers.filter((a): a is string => a !== undefined)
}
