// Scenario 5, memory: bytes per tracked key in the memory store (heap, after a full GC)
// and in Redis (INFO used_memory and MEMORY USAGE), at 1 M keys; and that the memory store
// stays under its cap when more identities come than it may hold.
import { createRequire } from 'node:module'
import { Redis } from 'ioredis'
import gcra from '../dist/esm/index.js'
import { RedisStore } from '../dist/esm/stores/redis.js'
import Fastify from 'fastify'
import { main } from './lib/scenario.js'
import { startRedis } from './lib/proc.js'
import { infoField } from './lib/redis-info.js'
import { fmt } from './lib/stats.js'

const require = createRequire(import.meta.url)

function heapUsed () {
  if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc')
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}

/** fastify-gcra's memory store through the plugin: `n` identities each charged once on '1/day'. */
async function gcraMemory (n, maxKeys) {
  const app = Fastify({ logger: false })
  await app.register(gcra, { store: { memory: { maxKeys } } })
  await app.ready()
  const limits = [{ max: 1, per: '1 day' }]
  const before = heapUsed()
  for (let i = 0; i < n; i++) await app.rateLimiter.consume(`client-${i}`, limits)
  const after = heapUsed()
  const stats = app.rateLimiter.stats()
  await app.close()
  return { keys: n, maxKeys, storeKeys: stats.storeKeys, evictedLive: stats.evictedLive, bytesPerKey: (after - before) / stats.storeKeys, heapMiB: (after - before) / 2 ** 20 }
}

/** @fastify/rate-limit's memory store (an LRU of counters), keyed by IPv4 addresses as by default. */
function frlMemory (n) {
  const LocalStore = require('@fastify/rate-limit/store/LocalStore.js')
  const store = new LocalStore(false, false, n)
  let size = 0
  const before = heapUsed()
  for (let i = 0; i < n; i++) store.incr(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, () => {}, 86_400_000, 1)
  const after = heapUsed()
  // the store is used after the measurement, so it is still alive during it
  size = store.lru.size ?? n
  return { keys: n, stored: size, bytesPerKey: (after - before) / n }
}

/** Keys written by each limiter's own script on a private Redis: used_memory delta and MEMORY USAGE of a sample. */
async function redisBytes (port, n, which) {
  const client = new Redis({ port, host: '127.0.0.1', enableAutoPipelining: true })
  await client.flushall()
  const before = infoField(await client.info('memory'), 'used_memory')
  const CHUNK = 5000
  let sample
  if (which === 'gcra') {
    const store = new RedisStore(client, false, 60_000)
    // the plugin's key shape: prefix, identity hash tag, policy id; '1/day': TTL a day
    const { hashIdentity } = await import('../dist/esm/identity/hash.js')
    for (let i = 0; i < n; i += CHUNK) {
      const calls = []
      for (let j = i; j < Math.min(n, i + CHUNK); j++) calls.push(store.decide([`gcra:{${hashIdentity(`client-${j}`)}}:0123456789ab`], [86_400_000_000], [86_400_000_000], true))
      await Promise.all(calls)
    }
    sample = (j) => `gcra:{${hashIdentity(`client-${j}`)}}:0123456789ab`
  } else {
    const RedisStoreFrl = require('@fastify/rate-limit/store/RedisStore.js')
    const store = new RedisStoreFrl(false, false, client, 'fastify-rate-limit-GET/-')
    const ip = (i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
    for (let i = 0; i < n; i += CHUNK) {
      const calls = []
      for (let j = i; j < Math.min(n, i + CHUNK); j++) calls.push(new Promise((resolve, reject) => store.incr(ip(j), (e, r) => e ? reject(e) : resolve(r), 86_400_000, 1)))
      await Promise.all(calls)
    }
    sample = (j) => `fastify-rate-limit-GET/-${ip(j)}`
  }
  const after = infoField(await client.info('memory'), 'used_memory')
  const keys = await client.dbsize()
  let usage = 0
  const SAMPLES = 200
  for (let s = 0; s < SAMPLES; s++) usage += await client.memory('USAGE', sample(Math.floor(s * n / SAMPLES)))
  client.disconnect()
  return { which, buckets: n, keys, keysPerBucket: keys / n, usedMemoryPerKey: (after - before) / keys, memoryUsagePerKey: usage / SAMPLES }
}

export async function run ({ quick }) {
  const n = quick ? 100_000 : 1_000_000
  const gcraMem = await gcraMemory(n, n)
  process.stderr.write(`memory fastify-gcra memory store: ${gcraMem.bytesPerKey.toFixed(0)} B/key at ${n}\n`)
  const frlMem = frlMemory(n)
  process.stderr.write(`memory @fastify/rate-limit memory store: ${frlMem.bytesPerKey.toFixed(0)} B/key at ${n}\n`)
  // more identities than the cap: the store must stay at it
  const capped = await gcraMemory(n, Math.floor(n / 4))
  process.stderr.write(`memory capped at ${capped.maxKeys}: ${capped.storeKeys} keys, ${capped.evictedLive} live evicted\n`)
  const redis = await startRedis()
  let gcraRedis, frlRedis, redisVersion
  try {
    const probe = new Redis({ port: redis.port, host: '127.0.0.1' })
    redisVersion = infoField(await probe.info('server'), 'redis_version')
    probe.disconnect()
    gcraRedis = await redisBytes(redis.port, n, 'gcra')
    frlRedis = await redisBytes(redis.port, n, 'frl')
  } finally {
    await redis.stop()
  }
  process.stderr.write(`memory Redis: gcra ${gcraRedis.memoryUsagePerKey} B (MEMORY USAGE), frl ${frlRedis.memoryUsagePerKey} B\n`)
  return { name: 'memory', quick, keys: n, redisVersion, gcraMem, frlMem, capped, gcraRedis, frlRedis }
}

export function markdown (r) {
  return [
    `### Memory per tracked key, ${fmt(r.keys)} keys`,
    '',
    '| store | bytes per key | how measured |',
    '|---|---:|---|',
    `| fastify-gcra, memory store | ${fmt(r.gcraMem.bytesPerKey)} | V8 heap after GC, through \`rateLimiter.consume\` (key strings included) |`,
    `| @fastify/rate-limit, memory store | ${fmt(r.frlMem.bytesPerKey)} | V8 heap after GC, its LocalStore keyed by IPv4 addresses |`,
    `| fastify-gcra, Redis | ${fmt(r.gcraRedis.memoryUsagePerKey)} (used_memory: ${fmt(r.gcraRedis.usedMemoryPerKey)}) | \`MEMORY USAGE\` of 200 keys; \`INFO memory\` delta / keys; ${fmt(r.gcraRedis.keysPerBucket, 2)} Redis key per bucket |`,
    `| @fastify/rate-limit, Redis | ${fmt(r.frlRedis.memoryUsagePerKey)} (used_memory: ${fmt(r.frlRedis.usedMemoryPerKey)}) | the same; ${fmt(r.frlRedis.keysPerBucket, 2)} Redis key per counter |`,
    '',
    `Cap: fastify-gcra's memory store with \`maxKeys: ${fmt(r.capped.maxKeys)}\` after ${fmt(r.capped.keys)} identities holds ${fmt(r.capped.storeKeys)} keys (${fmt(r.capped.evictedLive)} live buckets evicted, ${fmt(r.capped.heapMiB, 1)} MiB of heap).`,
  ].join('\n')
}

await main(import.meta.url, run)
