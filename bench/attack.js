// Scenario 2, under attack: identities already over their limit send 9 of every 10
// connections' traffic, good callers the 10th. Compared with the same load made only of
// good callers, on the same limiter. Redis commands counted from INFO commandstats. The
// attack runs twice: as fast as the limiter answers it (each bad connection sends again
// once answered: a limiter that refuses faster draws more attack traffic), and at a fixed
// rate of bad requests, the same for every limiter.
import { Redis } from 'ioredis'
import { main, withLowSteal } from './lib/scenario.js'
import { runLoad, sleep, startRedis, startServer } from './lib/proc.js'
import { limiterCommands, parseCommandstats } from './lib/redis-info.js'
import { fmt, pct, spread } from './lib/stats.js'
import { LABELS } from './overhead.js'

export const LIMITERS = ['frl-redis', 'gcra-redis', 'gcra-redis-pipe', 'frl-memory', 'gcra-memory']
const CONNECTIONS = 10
const BAD_KEYS = 100
const GOOD_KEYS = 1000
// the /bad route admits 10 a minute: this many per identity is sure to exhaust it
const EXHAUST_PER_KEY = 12
// the fixed attack: bad requests per second over its 9 connections, below what any limiter here refuses at most
export const BAD_RATE = 5000

export async function run ({ quick }) {
  const rounds = quick ? 1 : 2
  const duration = quick ? 1.5 : 4
  const limiters = quick ? LIMITERS.slice(0, 3) : LIMITERS
  const redis = await startRedis()
  const admin = new Redis({ port: redis.port, host: '127.0.0.1' })
  const runs = []
  /**
   * One attack on a fresh server, after its bad identities were exhausted: 9 bad
   * connections (at `badRate` req/s over all of them, else each as fast as it is answered)
   * and 1 good one; the Redis commands and deny-cache hits of the attack.
   */
  const attack = async (limiter, badRate) => {
    await admin.flushall()
    const server = await startServer({ limiter, app: 'attack', redisPort: redis.port })
    try {
      const url = `http://127.0.0.1:${server.port}`
      await runLoad({ url: `${url}/bad`, amount: BAD_KEYS * EXHAUST_PER_KEY, connections: CONNECTIONS, keys: BAD_KEYS, keyPrefix: 'bad-' })
      await admin.config('RESETSTAT')
      const [bad, good] = await Promise.all([
        runLoad({ url: `${url}/bad`, duration, connections: CONNECTIONS - 1, keys: BAD_KEYS, keyPrefix: 'bad-', ...(badRate === undefined ? {} : { overallRate: badRate }) }),
        runLoad({ url: `${url}/good`, duration, connections: 1, keys: GOOD_KEYS, keyPrefix: 'good-' }),
      ])
      const commands = limiterCommands(parseCommandstats(await admin.info('commandstats')))
      const report = await server.stop()
      return { bad, good, commands, denyCacheHits: report?.stats?.denyCacheHits }
    } finally {
      await server.stop()
    }
  }
  try {
    for (let round = 0; round < rounds; round++) {
      for (const limiter of limiters) {
        // the same load, only good callers
        const calm = await withLowSteal(async () => {
          await admin.flushall()
          const server = await startServer({ limiter, app: 'attack', redisPort: redis.port })
          try {
            await sleep(200)
            return await runLoad({ url: `http://127.0.0.1:${server.port}/good`, duration, connections: CONNECTIONS, keys: GOOD_KEYS, keyPrefix: 'good-' })
          } finally {
            await server.stop()
          }
        })
        const attacked = await withLowSteal(() => attack(limiter))
        // the same attack at a fixed rate: every limiter meets the same attack traffic
        const rated = await withLowSteal(() => attack(limiter, BAD_RATE))
        const { bad, good, commands, denyCacheHits } = attacked.value
        const total = bad.total + good.total
        const admitted = bad.ok + good.ok
        const refused = bad.statuses['429'] ?? 0
        const redisUsed = limiter.includes('redis')
        const row = {
          round,
          limiter,
          calmRps: calm.value.rps,
          calmP99Ms: calm.value.p99Ms,
          attackRps: total / Math.max(bad.durationS, good.durationS),
          badShare: bad.total / total,
          refused,
          badAdmitted: bad.ok,
          goodRps: good.rps,
          goodP99Ms: good.p99Ms,
          goodNon2xx: good.non2xx,
          p99Ratio: good.p99Ms / calm.value.p99Ms,
          ratedBadRps: rated.value.bad.rps,
          ratedGoodP99Ms: rated.value.good.p99Ms,
          ratedP99Ratio: rated.value.good.p99Ms / calm.value.p99Ms,
          // every admitted request is one script call for both plugins; the rest are the refusals'
          scriptsPerRequest: redisUsed ? commands.scripts / total : undefined,
          commandsPerRequest: redisUsed ? commands.all / total : undefined,
          scriptsPerRefusal: redisUsed && refused > 0 ? Math.max(0, commands.scripts - admitted) / refused : undefined,
          denyCacheHits,
          steal: Math.max(calm.steal, attacked.steal, rated.steal),
          highSteal: calm.highSteal || attacked.highSteal || rated.highSteal,
        }
        runs.push(row)
        process.stderr.write(`attack r${round} ${limiter}: ${Math.round(row.attackRps)} req/s (${pct(row.badShare)} bad), good p99 ${row.goodP99Ms.toFixed(2)} ms vs calm ${row.calmP99Ms.toFixed(2)} ms; at ${Math.round(row.ratedBadRps)} bad req/s ${row.ratedGoodP99Ms.toFixed(2)} ms; scripts/refusal ${row.scriptsPerRefusal?.toFixed(4)}\n`)
      }
    }
  } finally {
    admin.disconnect()
    await redis.stop()
  }
  const summary = limiters.map((limiter) => {
    const mine = runs.filter(r => r.limiter === limiter)
    const med = (f) => spread(mine.map(f)).median
    return {
      limiter,
      calmRps: med(r => r.calmRps),
      calmP99Ms: med(r => r.calmP99Ms),
      attackRps: med(r => r.attackRps),
      badShare: med(r => r.badShare),
      goodP99Ms: med(r => r.goodP99Ms),
      p99Ratio: spread(mine.map(r => r.p99Ratio)),
      ratedBadRps: med(r => r.ratedBadRps),
      ratedGoodP99Ms: med(r => r.ratedGoodP99Ms),
      ratedP99Ratio: spread(mine.map(r => r.ratedP99Ratio)),
      scriptsPerRequest: med(r => r.scriptsPerRequest),
      commandsPerRequest: med(r => r.commandsPerRequest),
      scriptsPerRefusal: med(r => r.scriptsPerRefusal),
      badAdmitted: med(r => r.badAdmitted),
      goodNon2xx: mine.reduce((n, r) => n + r.goodNon2xx, 0),
    }
  })
  return { name: 'attack', quick, rounds, durationS: duration, connections: CONNECTIONS, badKeys: BAD_KEYS, goodKeys: GOOD_KEYS, badRate: BAD_RATE, runs, summary }
}

export function markdown (result) {
  const lines = [
    `### Under attack: ${result.connections - 1} of ${result.connections} connections from ${result.badKeys} identities already over their limit (10/minute), 1 from ${fmt(result.goodKeys)} good callers (${result.rounds} round(s) × ${result.durationS} s)`,
    '',
    '| limiter | req/s, calm | req/s, attacked (refused share) | good p99 ms, calm → attacked | × calm p99, median (min–max) | Redis script calls / refused request | Redis commands / request (incl. inside scripts) |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ]
  for (const r of result.summary) {
    const ratio = r.p99Ratio.n > 1 ? `${r.p99Ratio.median.toFixed(2)} (${r.p99Ratio.min.toFixed(2)}–${r.p99Ratio.max.toFixed(2)})` : fmt(r.p99Ratio.median, 2)
    lines.push(`| ${LABELS[r.limiter]} | ${fmt(r.calmRps)} | ${fmt(r.attackRps)} (${pct(r.badShare, 0)}) | ${fmt(r.calmP99Ms, 3)} → ${fmt(r.goodP99Ms, 3)} | ${ratio} | ${fmt(r.scriptsPerRefusal, 4)} | ${fmt(r.commandsPerRequest, 3)} |`)
  }
  if (result.summary.some(r => r.ratedP99Ratio !== undefined)) {
    lines.push('', `**The same attack at a fixed rate** (${fmt(result.badRate)} bad requests per second over ${result.connections - 1} connections, the same for every limiter; the good connection as above)`, '',
      '| limiter | bad req/s sent | good p99 ms, calm → attacked | × calm p99, median (min–max) |',
      '|---|---:|---:|---:|')
    for (const r of result.summary) {
      const ratio = r.ratedP99Ratio.n > 1 ? `${r.ratedP99Ratio.median.toFixed(2)} (${r.ratedP99Ratio.min.toFixed(2)}–${r.ratedP99Ratio.max.toFixed(2)})` : fmt(r.ratedP99Ratio.median, 2)
      lines.push(`| ${LABELS[r.limiter]} | ${fmt(r.ratedBadRps)} | ${fmt(r.calmP99Ms, 3)} → ${fmt(r.ratedGoodP99Ms, 3)} | ${ratio} |`)
    }
  }
  lines.push('', 'Calm: the same 10 connections, all from good callers. Script calls per refused request = (EVALSHA/EVAL calls − admitted requests) / refused requests, after the bad identities were exhausted and `CONFIG RESETSTAT`. In the first table each bad connection sends again as soon as it is answered, so a limiter that refuses faster draws more attack traffic; in the second the attack is the same for every limiter.')
  return lines.join('\n')
}

await main(import.meta.url, run)
