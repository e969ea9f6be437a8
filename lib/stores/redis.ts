/**
 * The shared store on Redis or Redis Cluster: decisions coalesced into one script call per
 * node and turn of the event loop (`coalesce.ts`); scripts registered once per client with
 * `defineCommand` (EVALSHA, with EVAL on NOSCRIPT).
 */
import calculateSlot from 'cluster-key-slot'
import type { Cluster, Redis } from 'ioredis'
import { FST_GCRA_STORE_REPLY, describe } from '../errors.js'
import { ACQUIRE_LUA, GCRA_LUA, GCRA_LUA_CROSS_SLOT, RENEW_LUA, SETTLE_LUA } from '../gcra/lua.js'
import { Coalescer } from './coalesce.js'
import type { RemoteStore, SlotReply, StoreReply } from './contract.js'
import { withTimeout } from '../util/timeout.js'

// Versioned, so two releases sharing one client never run each other's script.
const COMMAND = 'fastifyGcraDecideV3'
const COMMAND_CROSS_SLOT = 'fastifyGcraDecideCrossSlotV3'
const SETTLE = 'fastifyGcraSettleV2'
const ACQUIRE = 'fastifyGcraAcquireV1'
const RENEW = 'fastifyGcraRenewV1'
const SCRIPTS: ReadonlyArray<readonly [string, string, number | undefined]> = [
  [COMMAND, GCRA_LUA, undefined],
  [COMMAND_CROSS_SLOT, GCRA_LUA_CROSS_SLOT, undefined],
  [SETTLE, SETTLE_LUA, undefined],
  [ACQUIRE, ACQUIRE_LUA, 1],
  [RENEW, RENEW_LUA, 1],
]

/**
 * The Redis Cluster slot of a hash tag, by cluster-key-slot (what ioredis itself uses).
 * Our tags are base64url, brace-free: the slot of the tag is that of any key holding it.
 */
export function slotOf (hashTag: string): number {
  return calculateSlot(hashTag)
}

export const isCluster = (client: Redis | Cluster): client is Cluster => typeof (client as Cluster).nodes === 'function'

type ScriptClient = (Redis | Cluster) & Record<string, ((...args: Array<string | number>) => Promise<unknown>) | undefined>

export class RedisStore implements RemoteStore {
  readonly remote = true as const
  readonly client: Redis | Cluster
  readonly #owns: boolean
  /** The connection that hears refunds (subscribed: it can carry nothing else). */
  #subscriber: Redis | Cluster | undefined
  /** What onReconnect put on the client, taken off at close. */
  readonly #onReady: Array<() => void> = []
  readonly #coalescer: Coalescer

  /** `timeoutMs`: the store timeout (a call holds its node's turn at most half of it). */
  constructor (client: Redis | Cluster, ownsClient: boolean, timeoutMs?: number) {
    this.client = client
    this.#owns = ownsClient
    for (const [name, lua, numberOfKeys] of SCRIPTS) {
      if (typeof (client as unknown as ScriptClient)[name] !== 'function') {
        client.defineCommand(name, numberOfKeys === undefined ? { lua } : { lua, numberOfKeys })
      }
    }
    // a Cluster routes a call by its one declared key, the first: the others are on its master
    this.#coalescer = new Coalescer(isCluster(client)
      ? (_node, keys, argv) => this.#call(COMMAND_CROSS_SLOT, [1, keys[0]!, keys.length, ...keys, ...argv])
      : (_node, keys, argv) => this.#call(COMMAND, [keys.length, ...keys, ...argv]), { timeoutMs: timeoutMs ?? 100 })
  }

  /** One decision, sent with the others of this turn bound for the same node. */
  decide (keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean, slackUs = 0): Promise<StoreReply> {
    return new Promise((resolve, reject) => { this.decideThen(keys, capacitiesUs, incrementsUs, charge, slackUs, resolve, reject) })
  }

  /** `decide` with callbacks, answered within the store timeout (the coalescer's deadlines). */
  decideThen (keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean, slackUs: number, resolve: (reply: StoreReply) => void, reject: (error: unknown) => void): void {
    this.#coalescer.add(this.#nodeOfKeys(keys), { keys, capacitiesUs, incrementsUs, charge, slackUs, resolve, reject })
  }

  /** The node of a caller's keys (they share its {hash tag}). */
  #nodeOfKeys (keys: readonly string[]): string {
    const key = keys[0]!
    return this.#nodeOf(key.slice(key.indexOf('{') + 1, key.indexOf('}')))
  }

  /** Which call a caller's decision joins: the master of its slot (the slot itself while the slots are unknown). */
  #nodeOf (hashTag: string): string {
    return this.#master(hashTag) ?? `slot ${slotOf(hashTag)}`
  }

  /** The master serving a hash tag's slot: '' for one Redis, 'host:port' on a Cluster, undefined while unknown. */
  #master (hashTag: string): string | undefined {
    const client = this.client
    return isCluster(client) ? client.slots[slotOf(hashTag)]?.[0] : ''
  }

  async adjust (keys: readonly string[], capacitiesUs: readonly number[], deltasUs: readonly number[], slackUs = 0): Promise<StoreReply> {
    const n = keys.length
    const args: Array<string | number> = [n, ...keys]
    for (let i = 0; i < n; i++) args.push(capacitiesUs[i]!, deltasUs[i]!)
    args.push(slackUs)
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
    return this.#master(hashTag) ?? 'unassigned'
  }

  onReconnect (listener: () => void): void {
    this.client.on('ready', listener)
    this.#onReady.push(listener)
  }

  async delete (keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return
    // the caller's decisions asked before the delete go first, as they were asked (a reset wins over them)
    this.#coalescer.flush(this.#nodeOfKeys(keys))
    await this.client.del(...keys)
  }

  async close (): Promise<void> {
    // a client given to the plugin outlives the app: none of the store's listeners stay on it
    for (const listener of this.#onReady.splice(0)) this.client.off('ready', listener)
    // the refunds connection is always the store's own
    this.#subscriber?.disconnect()
    this.#subscriber = undefined
    if (!this.#owns) return
    // QUIT waits for the server: a hung one must not hold the app's shutdown
    const quit = await withTimeout(this.client.quit().catch(() => 'failed' as const), 1000, () => 'late' as const)
    if (quit !== 'OK') this.client.disconnect()
  }
}

function decisionReply (reply: unknown, n: number): StoreReply {
  if (!Array.isArray(reply) || reply.length !== n + 2 || !reply.every(v => typeof v === 'number')) {
    throw new FST_GCRA_STORE_REPLY(describe(reply))
  }
  return { allowed: reply[0] === 1, nowUs: reply[1] as number, tatsUs: reply.slice(2) as number[] }
}

