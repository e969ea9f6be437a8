/**
 * The shared store: one Lua script per decision on Redis or Redis Cluster, registered
 * once per client with `defineCommand` (EVALSHA, with EVAL on NOSCRIPT).
 */
import { Redis, type Cluster, type RedisOptions } from 'ioredis'
import { FST_GCRA_STORE_REPLY, describe } from '../errors.js'
import { ACQUIRE_LUA, GCRA_LUA, RENEW_LUA, SETTLE_LUA } from '../lua.js'
import type { RateLimitStore, SlotReply, StoreReply } from './store.js'

// Versioned, so two releases sharing one client never run each other's script.
const COMMAND = 'fastifyGcraDecideV1'
const SETTLE = 'fastifyGcraSettleV1'
const ACQUIRE = 'fastifyGcraAcquireV1'
const RENEW = 'fastifyGcraRenewV1'
const SCRIPTS: ReadonlyArray<readonly [string, string, number | undefined]> = [
  [COMMAND, GCRA_LUA, undefined],
  [SETTLE, SETTLE_LUA, undefined],
  [ACQUIRE, ACQUIRE_LUA, 1],
  [RENEW, RENEW_LUA, 1],
]

/** CRC16-XMODEM, the hash of Redis Cluster's key slots (slot = crc16(tag) mod 16384). */
export function crc16 (text: string): number {
  let crc = 0
  for (const byte of Buffer.from(text)) {
    crc ^= byte << 8
    for (let i = 0; i < 8; i++) crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc
}

const isCluster = (client: Redis | Cluster): client is Cluster => typeof (client as Cluster).nodes === 'function'

type ScriptClient = (Redis | Cluster) & Record<string, ((...args: Array<string | number>) => Promise<unknown>) | undefined>

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

export class RedisStore implements RateLimitStore {
  readonly client: Redis | Cluster
  readonly #owns: boolean
  /** The connection that hears refunds (subscribed: it can carry nothing else). */
  #subscriber: Redis | Cluster | undefined

  constructor (client: Redis | Cluster, ownsClient: boolean) {
    this.client = client
    this.#owns = ownsClient
    for (const [name, lua, numberOfKeys] of SCRIPTS) {
      if (typeof (client as unknown as ScriptClient)[name] !== 'function') {
        client.defineCommand(name, numberOfKeys === undefined ? { lua } : { lua, numberOfKeys })
      }
    }
  }

  /** A store on a client of its own, connected to `url`. */
  static fromUrl (url: string): RedisStore {
    return new RedisStore(new Redis(url, OWN_CLIENT_OPTIONS), true)
  }

  async decide (keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean): Promise<StoreReply> {
    const n = keys.length
    const args: Array<string | number> = [n, ...keys, charge ? '1' : '0']
    for (let i = 0; i < n; i++) args.push(capacitiesUs[i]!, incrementsUs[i]!)
    return decisionReply(await this.#call(COMMAND, args), n)
  }

  async adjust (keys: readonly string[], capacitiesUs: readonly number[], deltasUs: readonly number[]): Promise<StoreReply> {
    const n = keys.length
    const args: Array<string | number> = [n, ...keys]
    for (let i = 0; i < n; i++) args.push(capacitiesUs[i]!, deltasUs[i]!)
    return decisionReply(await this.#call(SETTLE, args), n)
  }

  async acquire (key: string, limit: number, token: string, leaseMs: number): Promise<SlotReply> {
    const reply = await this.#call(ACQUIRE, [key, limit, token, leaseMs])
    if (!Array.isArray(reply) || reply.length !== 2 || typeof reply[0] !== 'number' || typeof reply[1] !== 'number') {
      throw new FST_GCRA_STORE_REPLY(describe(reply))
    }
    return { acquired: reply[0] === 1, inFlight: reply[1] }
  }

  async renew (keys: readonly string[], tokens: readonly string[], leaseMs: number): Promise<void> {
    await Promise.all(keys.map((key, i) => this.#call(RENEW, [key, tokens[i]!, leaseMs])))
  }

  async release (key: string, token: string): Promise<void> {
    await this.client.zrem(key, token)
  }

  async publishRefund (channel: string, hashTag: string): Promise<void> {
    await this.client.publish(channel, hashTag)
  }

  /**
   * Hear refunds on `channel`, on a connection of its own (a copy of the client's settings).
   * `onState(true)` once subscribed (again after each reconnect), `onState(false)` whenever
   * the connection drops: refunds sent meanwhile are missed.
   */
  listenRefunds (channel: string, onRefund: (hashTag: string) => void, onState: (listening: boolean) => void, onError: (error: unknown) => void): Promise<void> {
    const override = { enableOfflineQueue: true, lazyConnect: false, autoResubscribe: false, maxRetriesPerRequest: null, connectionName: 'fastify-gcra-refunds' }
    const sub = isCluster(this.client)
      ? this.client.duplicate(undefined, { redisOptions: { ...this.client.options.redisOptions, ...override } })
      : this.client.duplicate(override)
    this.#subscriber = sub
    sub.on('error', onError)
    sub.on('message', (from: string, message: string) => { if (from === channel) onRefund(message) })
    const subscribe = (): Promise<void> => (sub.subscribe(channel) as Promise<unknown>).then(() => onState(true), (error: unknown) => {
      onState(false)
      onError(error)
    })
    sub.on('close', () => onState(false))
    // the copy connects asynchronously: its first 'ready' comes after these listeners exist
    return new Promise<void>((resolve) => {
      sub.on('ready', () => { void subscribe().then(resolve) })
    })
  }

  #call (name: string, args: Array<string | number>): Promise<unknown> {
    const client = this.client as unknown as ScriptClient
    return client[name]!.apply(client, args)
  }

  shardOf (hashTag: string): string {
    const client = this.client
    if (!isCluster(client)) return ''
    return client.slots[crc16(hashTag) % 16384]?.[0] ?? 'unassigned'
  }

  onReconnect (listener: () => void): void {
    this.client.on('ready', listener)
  }

  async delete (keys: readonly string[]): Promise<void> {
    if (keys.length > 0) await this.client.del(...keys)
  }

  async close (): Promise<void> {
    // the refunds connection is always the store's own
    this.#subscriber?.disconnect()
    this.#subscriber = undefined
    if (!this.#owns) return
    // QUIT waits for the server: a hung one must not hold the app's shutdown
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>(resolve => { timer = setTimeout(() => resolve('late'), 1000) })
    const quit = await Promise.race([this.client.quit().catch(() => 'failed' as const), late])
    clearTimeout(timer)
    if (quit !== 'OK') this.client.disconnect()
  }
}

function decisionReply (reply: unknown, n: number): StoreReply {
  if (!Array.isArray(reply) || reply.length !== n + 2 || !reply.every(v => typeof v === 'number')) {
    throw new FST_GCRA_STORE_REPLY(describe(reply))
  }
  return { allowed: reply[0] === 1, nowUs: reply[1] as number, tatsUs: reply.slice(2) as number[] }
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
