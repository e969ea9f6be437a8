// Scenario 6, Redis cost: server-side µs per decision of each limiter's script, from
// INFO commandstats (EVALSHA usec_per_call) and from the Redis process's own CPU time
// (INFO cpu), with decisions sent by an auto-pipelined client; and what that makes one
// Redis core able to serve. Then fastify-gcra's store with its decisions coalesced: N
// decisions of distinct callers asked in one synchronous loop travel in one script call,
// for N = 1, 8, 32, 128; Redis CPU and commands per decision for each N.
import { createRequire } from 'node:module'
import { Redis } from 'ioredis'
import { RedisStore } from '../dist/esm/stores/redis.js'
import { hashIdentity } from '../dist/esm/identity/hash.js'
import { main } from './lib/scenario.js'
import { startRedis } from './lib/proc.js'
import { infoField, parseCommandstats, perDecision, redisCpuSeconds, redisCpuUsPer } from './lib/redis-info.js'
import { fmt } from './lib/stats.js'

const require = createRequire(import.meta.url)
const WINDOW = 512 // decisions in flight
/** Decisions per script call in the coalesced measurement. */
export const BATCHES = [1, 8, 32, 128]
const CALLERS = 10_000 // distinct identities the coalesced decisions rotate over

function deciders (client) {
  const gcra = new RedisStore(client, false, 60_000)
  const FrlStore = require('@fastify/rate-limit/store/RedisStore.js')
  const frl = new FrlStore(false, false, client, 'fastify-rate-limit-GET/-')
  const cap = [1_000_000_000]
  const inc = [1]
  return {
    // a huge limit: every decision admits and writes, as on the overhead route
    gcra: (key) => gcra.decide([`gcra:{${key}}:0123456789ab`], cap, inc, true),
    frl: (key) => new Promise((resolve, reject) => frl.incr(key, (e, r) => e ? reject(e) : resolve(r), 60_000, 1_000_000_000)),
  }
}

export async function run ({ quick }) {
  const total = quick ? 40_000 : 200_000
  const redis = await startRedis()
  const client = new Redis({ port: redis.port, host: '127.0.0.1', enableAutoPipelining: true })
  const admin = new Redis({ port: redis.port, host: '127.0.0.1' })
  const redisVersion = infoField(await admin.info('server'), 'redis_version')
  const decide = deciders(client)
  const rows = []
  let batchRows = []
  try {
    for (const keys of [1, 10_000]) {
      const names = Array.from({ length: keys }, (_, i) => hashIdentity(`client-${i}`))
      for (const which of ['frl', 'gcra', 'frl', 'gcra']) {
        await admin.flushall()
        // one warm-up call loads the script
        await decide[which](names[0])
        await admin.config('RESETSTAT')
        const cpuBefore = redisCpuSeconds(await admin.info('cpu'))
        const started = performance.now()
        for (let sent = 0; sent < total; sent += WINDOW) {
          const calls = []
          for (let i = sent; i < Math.min(total, sent + WINDOW); i++) calls.push(decide[which](names[i % keys]))
          await Promise.all(calls)
        }
        const seconds = (performance.now() - started) / 1000
        const cpuUs = (redisCpuSeconds(await admin.info('cpu')) - cpuBefore) * 1e6
        const stats = parseCommandstats(await admin.info('commandstats'))
        const evalsha = stats.evalsha ?? { calls: 0, usec: 0 }
        const inner = Object.entries(stats).filter(([name]) => !['evalsha', 'eval', 'info', 'config|resetstat', 'config'].includes(name)).reduce((n, [, s]) => n + s.calls, 0)
        rows.push({
          which,
          keys,
          decisions: total,
          // fastify-gcra's store coalesces the decisions asked in one turn (up to its bound per call)
          decisionsPerCall: total / evalsha.calls,
          scriptUsPerCall: evalsha.usec / evalsha.calls,
          scriptUsPerDecision: evalsha.usec / total,
          redisCpuUsPerDecision: cpuUs / total,
          commandsInside: inner / total,
          clientRate: total / seconds,
        })
        process.stderr.write(`redis-cost ${which} keys=${keys}: ${(evalsha.usec / evalsha.calls).toFixed(2)} µs/call (commandstats), ${(total / evalsha.calls).toFixed(1)} decisions/call, ${(cpuUs / total).toFixed(2)} µs Redis CPU/decision\n`)
      }
    }
    batchRows = await coalesced(redis.port, admin, quick)
  } finally {
    client.disconnect()
    admin.disconnect()
    await redis.stop()
  }
  // two passes each, alternated: keep the lower (less disturbed) of each
  const summary = []
  for (const keys of [1, 10_000]) {
    for (const which of ['gcra', 'frl']) {
      const mine = rows.filter(r => r.keys === keys && r.which === which)
      const best = (f) => Math.min(...mine.map(f))
      summary.push({ which, keys, decisionsPerCall: mine[0].decisionsPerCall, scriptUsPerCall: best(r => r.scriptUsPerCall), scriptUsPerDecision: best(r => r.scriptUsPerDecision), redisCpuUsPerDecision: best(r => r.redisCpuUsPerDecision), commandsInside: mine[0].commandsInside, clientRate: Math.max(...mine.map(r => r.clientRate)) })
    }
  }
  const batches = summariseBatches(batchRows)
  return { name: 'redis-cost', quick, decisions: total, window: WINDOW, redisVersion, rows, summary, batchDecisions: batchRows[0]?.decisions, callers: CALLERS, batchRows, batches }
}

/**
 * fastify-gcra's store on a client of its own (no auto-pipelining), decisions coalesced: each
 * turn asks `n` decisions of distinct callers in one synchronous loop, then awaits them all,
 * so one script call of `n` decisions is in flight at a time. Two passes, the batch sizes in
 * opposite orders.
 */
async function coalesced (port, admin, quick) {
  const total = quick ? 12_800 : 64_000 // a multiple of every batch size
  const client = new Redis({ port, host: '127.0.0.1' })
  const store = new RedisStore(client, false, 60_000)
  const keys = Array.from({ length: CALLERS }, (_, i) => [`gcra:{${hashIdentity(`caller-${i}`)}}:0123456789ab`])
  const cap = [1_000_000_000]
  const inc = [1]
  const rows = []
  try {
    for (const order of [BATCHES, [...BATCHES].reverse()]) {
      for (const n of order) {
        await admin.flushall()
        await store.decide(keys[0], cap, inc, true) // loads the script
        await admin.config('RESETSTAT')
        const cpuBefore = await admin.info('cpu')
        const started = performance.now()
        let next = 0
        for (let sent = 0; sent < total; sent += n) {
          const calls = []
          for (let i = 0; i < n; i++) {
            calls.push(store.decide(keys[next], cap, inc, true))
            next = next + 1 === CALLERS ? 0 : next + 1
          }
          await Promise.all(calls)
        }
        const seconds = (performance.now() - started) / 1000
        const cpuAfter = await admin.info('cpu')
        const row = { batch: n, decisions: total, ...perDecision(parseCommandstats(await admin.info('commandstats')), total), redisCpuUsPerDecision: redisCpuUsPer(cpuBefore, cpuAfter, total), clientRate: total / seconds }
        rows.push(row)
        process.stderr.write(`redis-cost coalesced ${n}/call: ${row.scriptCallsPerDecision.toFixed(3)} calls/decision, ${row.commandsPerDecision.toFixed(3)} commands/decision, ${row.redisCpuUsPerDecision.toFixed(2)} µs Redis CPU/decision\n`)
      }
    }
  } finally {
    client.disconnect()
  }
  return rows
}

/** Per batch size, the better (lower CPU) of its passes. */
export function summariseBatches (rows) {
  return BATCHES.filter(n => rows.some(r => r.batch === n)).map((n) => {
    const mine = rows.filter(r => r.batch === n)
    const best = (f) => Math.min(...mine.map(f))
    return { batch: n, scriptCallsPerDecision: mine[0].scriptCallsPerDecision, commandsPerDecision: mine[0].commandsPerDecision, scriptUsPerDecision: best(r => r.scriptUsPerDecision), redisCpuUsPerDecision: best(r => r.redisCpuUsPerDecision), clientRate: Math.max(...mine.map(r => r.clientRate)) }
  })
}

const NAMES = { gcra: 'fastify-gcra script', frl: '@fastify/rate-limit script' }

export function markdown (r) {
  const lines = [
    `### Redis cost per decision (${fmt(r.decisions)} decisions per pass, ${r.window} in flight on one auto-pipelined client, best of 2 passes)`,
    '',
    '| script | keys | decisions per script call | µs per EVALSHA (commandstats) | script µs per decision | commands inside, per decision | Redis CPU µs per decision (INFO cpu) | decisions/s per Redis core (1 / CPU per decision) | decisions/s seen by the client |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const s of r.summary) {
    lines.push(`| ${NAMES[s.which]} | ${fmt(s.keys)} | ${fmt(s.decisionsPerCall, 1)} | ${fmt(s.scriptUsPerCall, 2)} | ${fmt(s.scriptUsPerDecision, 2)} | ${fmt(s.commandsInside, 2)} | ${fmt(s.redisCpuUsPerDecision, 2)} | ${fmt(1e6 / s.redisCpuUsPerDecision)} | ${fmt(s.clientRate)} |`)
  }
  lines.push('', 'commandstats time is the script alone; Redis CPU time adds reading, parsing and answering the pipelined calls. fastify-gcra\'s store coalesces the decisions asked in one turn of the event loop into one call (at most its per-call bound), hence its decisions per script call.')
  if (r.batches?.length > 0) {
    lines.push(
      '',
      `#### fastify-gcra, coalesced decisions: N per script call (${fmt(r.batchDecisions)} decisions per pass over ${fmt(r.callers)} distinct callers, one call in flight, best of 2 passes)`,
      '',
      '| decisions per call (N) | script calls per decision | commands per decision (commandstats, scripts\' own included) | script µs per decision (commandstats) | Redis CPU µs per decision (INFO cpu) | decisions/s per Redis core | decisions/s seen by the client |',
      '|---:|---:|---:|---:|---:|---:|---:|',
    )
    for (const b of r.batches) {
      lines.push(`| ${fmt(b.batch)} | ${fmt(b.scriptCallsPerDecision, 3)} | ${fmt(b.commandsPerDecision, 3)} | ${fmt(b.scriptUsPerDecision, 2)} | ${fmt(b.redisCpuUsPerDecision, 2)} | ${fmt(1e6 / b.redisCpuUsPerDecision)} | ${fmt(b.clientRate)} |`)
    }
    lines.push('', 'Each turn asks N decisions of distinct callers in one synchronous loop and awaits them all before the next: one EVALSHA with N decisions, one TIME and one MGET inside it, one SET per admitted decision. N = 1 is one request per turn; the Redis CPU per decision then carries a whole round trip\'s reading and answering.')
  }
  return lines.join('\n')
}

await main(import.meta.url, run)
