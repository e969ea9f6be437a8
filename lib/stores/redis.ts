/**
 * The shared store: one Lua script per decision on Redis or Redis Cluster, registered
 * once per client with `defineCommand` (EVALSHA, with EVAL on NOSCRIPT).
 */
import { Redis, type Cluster, type RedisOptions } from 'ioredis'
import { FST_GCRA_STORE_REPLY, describe } from '../errors.js'
import { GCRA_LUA } from '../lua.js'
import type { RateLimitStore, StoreReply } from './store.js'

// Versioned, so two releases sharing one client never run each other's script.
const COMMAND = 'fastifyGcraDecideV1'

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

type ScriptClient = (Redis | Cluster) & {
  [COMMAND]?: (...args: Array<string | number>) => Promise<unknown>
}

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

  constructor (client: Redis | Cluster, ownsClient: boolean) {
    this.client = client
    this.#owns = ownsClient
    if (typeof (client as ScriptClient)[COMMAND] !== 'function') {
      client.defineCommand(COMMAND, { lua: GCRA_LUA })
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
    const reply = await (this.client as ScriptClient)[COMMAND]!(...args)
    if (!Array.isArray(reply) || reply.length !== n + 2 || !reply.every(v => typeof v === 'number')) {
      throw new FST_GCRA_STORE_REPLY(describe(reply))
    }
    return { allowed: reply[0] === 1, nowUs: reply[1] as number, tatsUs: reply.slice(2) as number[] }
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
    if (!this.#owns) return
    // QUIT waits for the server: a hung one must not hold the app's shutdown
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>(resolve => { timer = setTimeout(() => resolve('late'), 1000) })
    const quit = await Promise.race([this.client.quit().catch(() => 'failed' as const), late])
    clearTimeout(timer)
    if (quit !== 'OK') this.client.disconnect()
  }
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
