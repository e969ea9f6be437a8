// Scenario 1, overhead: a hello-world JSON route behind each limiter, every request
// admitted, in three load modes (10 connections over 1 identity and over 10 000; 100
// connections over 1 000). Fresh server per run, autocannon in its own process, the
// limiters interleaved round by round (the first one rotates each round); each server is
// warmed by a moment of the same load (other identities) before its measured run. Besides req/s,
// which moves with whatever shares the cores, each run reads CPU time: the app server's own
// (process.cpuUsage() over IPC) and, for the Redis limiters, the private Redis server's
// (INFO cpu), right before and right after the load, divided by the requests completed.
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { main } from './lib/scenario.js'
import { runLoad, sleep, startRedis, startServer } from './lib/proc.js'
import { redisCpuUsPer } from './lib/redis-info.js'
import { withLowSteal } from './lib/scenario.js'
import { addedOver, addedRatio, cpuUsPerRequest, fmt, pct, spread } from './lib/stats.js'
import { Redis } from 'ioredis'
import { LABELS, LIMITERS } from './lib/labels.js'

export { LIMITERS, LABELS }
/** Load modes, run in this order within each round. */
export const MODES = [
  { connections: 10, keys: 1 },
  { connections: 10, keys: 10_000 },
  { connections: 100, keys: 1_000 },
]
const usesRedis = (limiter) => limiter.includes('redis')
// fastify-gcra's limiter → its @fastify/rate-limit counterpart, for the ratios of added CPU
export const COUNTERPARTS = { 'gcra-memory': 'frl-memory', 'gcra-redis': 'frl-redis', 'gcra-redis-pipe': 'frl-redis-pipe' }

export async function run ({ quick, profile }) {
  const rounds = quick ? 1 : 4
  const duration = quick ? 1.2 : 4
  const warmS = quick ? 0.5 : 1
  const redis = await startRedis()
  const admin = new Redis({ port: redis.port, host: '127.0.0.1', lazyConnect: true })
  await admin.connect()
  const profileDir = fileURLToPath(new URL('./results/profiles/', import.meta.url))
  if (profile) mkdirSync(profileDir, { recursive: true })
  const runs = []
  try {
    for (let round = 0; round < rounds; round++) {
      for (const { connections, keys } of MODES) {
        const order = LIMITERS.map((_, i) => LIMITERS[(i + round) % LIMITERS.length])
        for (const limiter of order) {
          const measured = await withLowSteal(async () => {
            await admin.flushall()
            const nodeArgs = profile && limiter !== 'bare' ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `overhead-${limiter}-${connections}c-${keys}.cpuprofile`] : []
            const server = await startServer({ limiter, app: 'overhead', redisPort: redis.port }, { nodeArgs })
            try {
              await sleep(200)
              // the same load for a moment first, unmeasured: what follows is the server's
              // steady state, not its start (the JIT compiles the hot path once, per process)
              await runLoad({ url: `http://127.0.0.1:${server.port}/`, duration: warmS, connections, keys, keyPrefix: `w${round}-` })
              const cpuBefore = await server.cpu()
              const redisBefore = usesRedis(limiter) ? await admin.info('cpu') : undefined
              const load = await runLoad({ url: `http://127.0.0.1:${server.port}/`, duration, connections, keys, keyPrefix: `r${round}-` })
              const cpuAfter = await server.cpu()
              const redisAfter = usesRedis(limiter) ? await admin.info('cpu') : undefined
              return {
                load,
                serverCpuUs: cpuUsPerRequest(cpuBefore, cpuAfter, load.total),
                redisCpuUs: redisCpuUsPer(redisBefore, redisAfter, load.total),
              }
            } finally {
              await server.stop()
            }
          })
          const { load, serverCpuUs, redisCpuUs } = measured.value
          runs.push({
            round, connections, keys, limiter,
            rps: load.rps, p50Ms: load.p50Ms, p99Ms: load.p99Ms, requests: load.total, non2xx: load.non2xx, errors: load.errors,
            serverCpuUsPerRequest: serverCpuUs, ...(usesRedis(limiter) ? { redisCpuUsPerRequest: redisCpuUs } : {}),
            steal: measured.steal, busy: measured.busy, repeats: measured.repeats, highSteal: measured.highSteal,
          })
          const redisPart = usesRedis(limiter) ? `, Redis ${redisCpuUs.toFixed(1)} µs/req` : ''
          process.stderr.write(`overhead r${round} ${connections}c keys=${keys} ${limiter}: ${Math.round(load.rps)} req/s, p99 ${load.p99Ms.toFixed(2)} ms, server ${serverCpuUs.toFixed(1)} µs/req${redisPart}, steal ${pct(measured.steal)}\n`)
        }
      }
    }
  } finally {
    admin.disconnect()
    await redis.stop()
  }
  return { name: 'overhead', quick, rounds, durationS: duration, warmS, modes: MODES, runs, summary: summarise(runs, MODES) }
}

/**
 * Per load mode and limiter: medians over rounds; each round's req/s ratio to bare Fastify in
 * that round; server CPU µs per request, and what it adds over bare Fastify's median in that
 * mode; Redis CPU µs per request; for fastify-gcra, its added CPU over its counterpart's.
 */
export function summarise (runs, modes) {
  const out = []
  for (const { connections, keys } of modes) {
    const of = (limiter) => runs.filter(r => r.connections === connections && r.keys === keys && r.limiter === limiter)
    const bare = new Map(of('bare').map(r => [r.round, r.rps]))
    const byRound = (limiter, base) => new Map(of(limiter).map(r => [r.round, r.rps / base.get(r.round)]))
    const bareCpu = spread(of('bare').map(r => r.serverCpuUsPerRequest)).median
    const rows = new Map()
    for (const limiter of LIMITERS) {
      const mine = of(limiter)
      const serverCpu = mine.map(r => r.serverCpuUsPerRequest)
      const row = {
        connections,
        keys,
        limiter,
        rps: spread(mine.map(r => r.rps)),
        p50Ms: spread(mine.map(r => r.p50Ms)).median,
        p99Ms: spread(mine.map(r => r.p99Ms)).median,
        vsBare: spread([...byRound(limiter, bare).values()]),
        refused: mine.reduce((n, r) => n + r.non2xx, 0),
        serverCpuUs: spread(serverCpu),
        addedCpuUs: addedOver(serverCpu, bareCpu),
        redisCpuUs: usesRedis(limiter) ? spread(mine.map(r => r.redisCpuUsPerRequest)) : undefined,
      }
      if (limiter.startsWith('gcra-redis')) {
        for (const other of ['frl-redis', 'frl-redis-pipe']) {
          const base = new Map(of(other).map(r => [r.round, r.rps]))
          row[`vs_${other}`] = spread([...byRound(limiter, base).values()])
        }
      }
      rows.set(limiter, row)
      out.push(row)
    }
    for (const [limiter, other] of Object.entries(COUNTERPARTS)) {
      const row = rows.get(limiter)
      const theirs = rows.get(other)
      row.counterpart = other
      row.addedCpuVsCounterpart = addedRatio(row.addedCpuUs.median, theirs.addedCpuUs.median)
      if (row.redisCpuUs !== undefined) row.redisCpuVsCounterpart = addedRatio(row.redisCpuUs.median, theirs.redisCpuUs.median)
    }
  }
  return out
}

const ratio = (s) => Number.isFinite(s.median) ? (s.n > 1 ? `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})` : s.median.toFixed(2)) : '–'

/** µs for a table: the median, with (min–max) when there were several rounds. */
const micros = (s) => s === undefined || !Number.isFinite(s.median) ? '–' : (s.n > 1 ? `${fmt(s.median, 1)} (${fmt(s.min, 1)}–${fmt(s.max, 1)})` : fmt(s.median, 1))
const times = (x) => Number.isFinite(x) ? `${x.toFixed(2)} ×` : '–'
const modeTitle = ({ connections, keys }) => `${connections} connections, ${fmt(keys)} identit${keys === 1 ? 'y' : 'ies'}`

export function markdown (result) {
  const rowsOf = ({ connections, keys }) => result.summary.filter(r => r.connections === connections && r.keys === keys)
  const lines = [
    `### Overhead: hello-world route, all requests admitted (${result.rounds} round(s) × ${result.durationS} s per limiter and load mode)`,
    '',
    ...(result.warmS === undefined ? [] : [`Each server first takes ${result.warmS} s of the same load, unmeasured (other identities), so that the runs measure its steady state rather than its start-up and JIT compilation.`, '']),
    'Server CPU: the app server process\'s own CPU time (`process.cpuUsage()`, user + system) over the load, per request completed; added: minus bare Fastify\'s median in the same mode. Redis CPU: the private redis-server\'s `used_cpu_user + used_cpu_sys` (INFO cpu) over the load, per request. req/s moves with whatever else runs on the cores; a process\'s own CPU time, less so.',
    '',
  ]
  for (const mode of result.modes) {
    const rows = rowsOf(mode)
    const find = (limiter) => rows.find(r => r.limiter === limiter)
    lines.push(`**${modeTitle(mode)}**`, '')
    lines.push(
      '| limiter | req/s (median) | p50 ms | p99 ms | × bare Fastify req/s, median (min–max) | server CPU µs/request, median (min–max) | added over bare Fastify, µs/request | Redis CPU µs/request, median (min–max) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
    )
    for (const row of rows) {
      lines.push(`| ${LABELS[row.limiter]} | ${fmt(row.rps.median)} | ${fmt(row.p50Ms, 3)} | ${fmt(row.p99Ms, 3)} | ${ratio(row.vsBare)} | ${micros(row.serverCpuUs)} | ${row.limiter === 'bare' ? '–' : micros(row.addedCpuUs)} | ${micros(row.redisCpuUs)} |`)
    }
    const gm = find('gcra-memory')
    const gr = find('gcra-redis')
    const gp = find('gcra-redis-pipe')
    lines.push('')
    lines.push(`Added server CPU per request, fastify-gcra ÷ @fastify/rate-limit: memory ${times(gm.addedCpuVsCounterpart)}; Redis, default client ${times(gr.addedCpuVsCounterpart)}; Redis + auto-pipelining ${times(gp.addedCpuVsCounterpart)}. Redis CPU per request, fastify-gcra ÷ @fastify/rate-limit: default client ${times(gr.redisCpuVsCounterpart)}; auto-pipelining ${times(gp.redisCpuVsCounterpart)}.`, '')
    lines.push(`req/s, fastify-gcra on Redis with auto-pipelining vs @fastify/rate-limit on Redis: ${ratio(gp['vs_frl-redis'])} × (its default client), ${ratio(gp['vs_frl-redis-pipe'])} × (with auto-pipelining too).`, '')
  }
  const stolen = result.runs.map(r => r.steal)
  const high = result.runs.filter(r => r.highSteal).length
  const repeated = result.runs.reduce((n, r) => n + r.repeats, 0)
  lines.push(`Steal per run: median ${pct(spread(stolen).median)}, max ${pct(spread(stolen).max)}; ${repeated} run(s) repeated for steal above 10 %, ${high} still above it after two repeats.`)
  return lines.join('\n')
}

await main(import.meta.url, run)
