// Scenario 1, overhead: a hello-world JSON route behind each limiter, every request
// admitted, over 1 identity and over 10 000. Fresh server per run, autocannon in its own
// process, the limiters interleaved round by round (the first one rotates each round).
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { main } from './lib/scenario.js'
import { runLoad, sleep, startRedis, startServer } from './lib/proc.js'
import { withLowSteal } from './lib/scenario.js'
import { fmt, pct, spread } from './lib/stats.js'
import { Redis } from 'ioredis'

export const LIMITERS = ['bare', 'frl-memory', 'gcra-memory', 'frl-redis', 'frl-redis-pipe', 'gcra-redis', 'gcra-redis-pipe']
export const LABELS = {
  bare: 'bare Fastify',
  'frl-memory': '@fastify/rate-limit, memory',
  'gcra-memory': 'fastify-gcra, memory',
  'frl-redis': '@fastify/rate-limit, Redis',
  'frl-redis-pipe': '@fastify/rate-limit, Redis + auto-pipelining',
  'gcra-redis': 'fastify-gcra, Redis',
  'gcra-redis-pipe': 'fastify-gcra, Redis + auto-pipelining',
}
const CONNECTIONS = 10

export async function run ({ quick, profile }) {
  const rounds = quick ? 1 : 4
  const duration = quick ? 1.2 : 4
  const keyModes = [1, 10_000]
  const redis = await startRedis()
  const admin = new Redis({ port: redis.port, host: '127.0.0.1', lazyConnect: true })
  await admin.connect()
  const profileDir = fileURLToPath(new URL('./results/profiles/', import.meta.url))
  if (profile) mkdirSync(profileDir, { recursive: true })
  const runs = []
  try {
    for (let round = 0; round < rounds; round++) {
      for (const keys of keyModes) {
        const order = LIMITERS.map((_, i) => LIMITERS[(i + round) % LIMITERS.length])
        for (const limiter of order) {
          const measured = await withLowSteal(async () => {
            await admin.flushall()
            const nodeArgs = profile && limiter !== 'bare' ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `overhead-${limiter}-${keys}.cpuprofile`] : []
            const server = await startServer({ limiter, app: 'overhead', redisPort: redis.port }, { nodeArgs })
            try {
              await sleep(200)
              return await runLoad({ url: `http://127.0.0.1:${server.port}/`, duration, connections: CONNECTIONS, keys, keyPrefix: `r${round}-` })
            } finally {
              await server.stop()
            }
          })
          const load = measured.value
          runs.push({ round, keys, limiter, rps: load.rps, p50Ms: load.p50Ms, p99Ms: load.p99Ms, non2xx: load.non2xx, errors: load.errors, steal: measured.steal, busy: measured.busy, repeats: measured.repeats, highSteal: measured.highSteal })
          process.stderr.write(`overhead r${round} keys=${keys} ${limiter}: ${Math.round(load.rps)} req/s, p99 ${load.p99Ms.toFixed(2)} ms, steal ${pct(measured.steal)}\n`)
        }
      }
    }
  } finally {
    admin.disconnect()
    await redis.stop()
  }
  return { name: 'overhead', quick, rounds, durationS: duration, connections: CONNECTIONS, keyModes, runs, summary: summarise(runs, keyModes) }
}

/** Per key mode and limiter: medians over rounds, and each round's ratio to bare Fastify in that round. */
export function summarise (runs, keyModes) {
  const out = []
  for (const keys of keyModes) {
    const of = (limiter) => runs.filter(r => r.keys === keys && r.limiter === limiter)
    const bare = new Map(of('bare').map(r => [r.round, r.rps]))
    const byRound = (limiter, base) => new Map(of(limiter).map(r => [r.round, r.rps / base.get(r.round)]))
    for (const limiter of LIMITERS) {
      const mine = of(limiter)
      const row = {
        keys,
        limiter,
        rps: spread(mine.map(r => r.rps)),
        p50Ms: spread(mine.map(r => r.p50Ms)).median,
        p99Ms: spread(mine.map(r => r.p99Ms)).median,
        vsBare: spread([...byRound(limiter, bare).values()]),
        refused: mine.reduce((n, r) => n + r.non2xx, 0),
      }
      if (limiter.startsWith('gcra-redis')) {
        for (const other of ['frl-redis', 'frl-redis-pipe']) {
          const base = new Map(of(other).map(r => [r.round, r.rps]))
          row[`vs_${other}`] = spread([...byRound(limiter, base).values()])
        }
      }
      out.push(row)
    }
  }
  return out
}

const ratio = (s) => Number.isFinite(s.median) ? (s.n > 1 ? `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})` : s.median.toFixed(2)) : '–'

export function markdown (result) {
  const lines = [`### Overhead: hello-world route, all requests admitted (${result.connections} connections, ${result.rounds} round(s) × ${result.durationS} s per limiter)`, '']
  for (const keys of result.keyModes) {
    lines.push(`**${fmt(keys)} identit${keys === 1 ? 'y' : 'ies'}**`, '')
    lines.push('| limiter | req/s (median) | p50 ms | p99 ms | × bare Fastify, median (min–max) |', '|---|---:|---:|---:|---:|')
    for (const row of result.summary.filter(r => r.keys === keys)) {
      lines.push(`| ${LABELS[row.limiter]} | ${fmt(row.rps.median)} | ${fmt(row.p50Ms, 3)} | ${fmt(row.p99Ms, 3)} | ${ratio(row.vsBare)} |`)
    }
    const pipe = result.summary.find(r => r.keys === keys && r.limiter === 'gcra-redis-pipe')
    lines.push('', `fastify-gcra on Redis with auto-pipelining vs @fastify/rate-limit on Redis: ${ratio(pipe['vs_frl-redis'])} × (its default client), ${ratio(pipe['vs_frl-redis-pipe'])} × (with auto-pipelining too).`, '')
  }
  const stolen = result.runs.map(r => r.steal)
  const high = result.runs.filter(r => r.highSteal).length
  const repeated = result.runs.reduce((n, r) => n + r.repeats, 0)
  lines.push(`Steal per run: median ${pct(spread(stolen).median)}, max ${pct(spread(stolen).max)}; ${repeated} run(s) repeated for steal above 10 %, ${high} still above it after two repeats.`)
  return lines.join('\n')
}

await main(import.meta.url, run)
