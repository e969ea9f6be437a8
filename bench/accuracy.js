// Scenario 3, accuracy: N server processes × M connections on one Redis hammer one
// identity with '100/second', burst 20. Admitted count against the exact GCRA bound
// burst + floor(rate × elapsed), elapsed = first to last admitted decision; and the burst
// each limiter lets through across a window boundary.
import { Redis } from 'ioredis'
import { main } from './lib/scenario.js'
import { runLoad, sleep, startRedis, startServer } from './lib/proc.js'
import { fmt, pct } from './lib/stats.js'
import { LABELS } from './overhead.js'

export const LIMITERS = ['gcra-redis', 'gcra-redis-pipe', 'frl-redis']
const RATE = 100 // per second
const BURST = 20
const INTERVAL_US = 1_000_000 / RATE
const PROCESSES = 2
const CONNECTIONS = 8

/** The most timestamps (µs, sorted) inside any window of `widthUs`. */
export function densest (sortedUs, widthUs) {
  let best = 0
  let lo = 0
  for (let hi = 0; hi < sortedUs.length; hi++) {
    while (sortedUs[hi] - sortedUs[lo] >= widthUs) lo++
    best = Math.max(best, hi - lo + 1)
  }
  return best
}

/** The GCRA bound on admissions between the first and the last admitted decision. */
export const gcraBound = (elapsedUs) => BURST + Math.floor(elapsedUs / INTERVAL_US)

async function hammer (limiter, redisPort, duration) {
  const servers = []
  try {
    for (let i = 0; i < PROCESSES; i++) servers.push(await startServer({ limiter, app: 'accuracy', redisPort, record: true }))
    await sleep(200)
    const loads = await Promise.all(servers.map(s => runLoad({ url: `http://127.0.0.1:${s.port}/`, duration, connections: CONNECTIONS, keys: 1, keyPrefix: 'hammered-' })))
    const reports = []
    for (const s of servers) reports.push(await s.stop())
    // Redis clock for fastify-gcra (the decision's own TIME); the app clock for the other
    const redisClock = limiter.startsWith('gcra-')
    const times = reports.flatMap(r => redisClock ? r.admittedRedisUs : r.admittedUs).sort((a, b) => a - b)
    const admitted = times.length
    const admittedByLoad = loads.reduce((n, l) => n + l.ok, 0)
    // every 200 the load saw must have been recorded with its decision's time (those still
    // in flight when the load stopped are recorded and never seen: at most one per connection)
    if (Math.abs(admitted - admittedByLoad) > PROCESSES * CONNECTIONS) throw new Error(`${limiter}: ${admitted} admissions recorded, the load saw ${admittedByLoad}`)
    const elapsedUs = admitted > 0 ? times[admitted - 1] - times[0] : 0
    const bound = gcraBound(elapsedUs)
    return {
      limiter,
      clock: redisClock ? 'Redis TIME of each decision' : 'app server clock',
      requests: loads.reduce((n, l) => n + l.total, 0),
      admitted,
      admittedByLoad,
      elapsedS: elapsedUs / 1e6,
      bound,
      overBound: admitted - bound,
      ofBound: admitted / bound,
      densest1s: densest(times, 1_000_000),
      denyCacheHits: reports.reduce((n, r) => n + (r.stats?.denyCacheHits ?? 0), 0),
    }
  } finally {
    for (const s of servers) await s.stop()
  }
}

/** One request, then two volleys either side of the end of a fixed window that opened with it. */
async function boundary (limiter, redisPort) {
  const server = await startServer({ limiter, app: 'accuracy', redisPort })
  const url = `http://127.0.0.1:${server.port}/`
  const send = () => fetch(url, { headers: { 'x-api-key': 'boundary' } }).then(async r => { await r.arrayBuffer(); return r.status })
  const volley = async () => (await Promise.all(Array.from({ length: 150 }, send))).filter(s => s === 200).length
  try {
    await sleep(200)
    const t0 = performance.now()
    const first = (await send()) === 200 ? 1 : 0
    await sleep(900 - (performance.now() - t0))
    const start = performance.now()
    const before = await volley()
    await sleep(1050 - (performance.now() - t0))
    const after = await volley()
    const spanMs = performance.now() - start
    return { limiter, first, before, after, volleys: before + after, spanMs, gcraBound: BURST + Math.floor(spanMs * RATE / 1000) }
  } finally {
    await server.stop()
  }
}

export async function run ({ quick }) {
  const duration = quick ? 2 : 10
  const redis = await startRedis()
  const admin = new Redis({ port: redis.port, host: '127.0.0.1' })
  const hammered = []
  const edges = []
  try {
    for (const limiter of LIMITERS) {
      await admin.flushall()
      const h = await hammer(limiter, redis.port, duration)
      hammered.push(h)
      process.stderr.write(`accuracy ${limiter}: admitted ${h.admitted} of ${h.requests} over ${h.elapsedS.toFixed(3)} s, bound ${h.bound} (${pct(h.ofBound, 2)})\n`)
      await admin.flushall()
      const e = await boundary(limiter, redis.port)
      edges.push(e)
      process.stderr.write(`boundary ${limiter}: ${e.volleys} admitted in ${e.spanMs.toFixed(0)} ms\n`)
    }
  } finally {
    admin.disconnect()
    await redis.stop()
  }
  return { name: 'accuracy', quick, durationS: duration, processes: PROCESSES, connections: CONNECTIONS, rate: RATE, burst: BURST, hammered, edges }
}

export function markdown (result) {
  const lines = [
    `### Accuracy: ${result.processes} processes × ${result.connections} connections, one identity, '${result.rate}/second' burst ${result.burst}, ${result.durationS} s, one Redis`,
    '',
    '| limiter | requests | admitted | elapsed s (first → last admitted) | GCRA bound 20 + ⌊100·t⌋ | admitted − bound | admitted / bound | most admitted in any 1 s |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for (const h of result.hammered) {
    lines.push(`| ${LABELS[h.limiter]} | ${fmt(h.requests)} | ${fmt(h.admitted)} | ${fmt(h.elapsedS, 3)} | ${fmt(h.bound)} | ${h.overBound > 0 ? '+' : ''}${h.overBound} | ${pct(h.ofBound, 2)} | ${fmt(h.densest1s)} |`)
  }
  lines.push('', 'Times: fastify-gcra from Redis TIME of each admitted decision; @fastify/rate-limit (a fixed window of 100 per second, no burst setting) from the app servers\' clocks.', '')
  lines.push('**Window boundary**: one request opens the window, then 150 requests at 900 ms and 150 more at 1 050 ms.', '')
  lines.push('| limiter | admitted at 900 ms | admitted at 1 050 ms | together, within | GCRA bound for that span |', '|---|---:|---:|---:|---:|')
  for (const e of result.edges) {
    lines.push(`| ${LABELS[e.limiter]} | ${e.before} | ${e.after} | ${e.volleys} in ${fmt(e.spanMs)} ms | ${e.gcraBound} |`)
  }
  return lines.join('\n')
}

await main(import.meta.url, run)
