// Scenario 7, hook cost: what each plugin's own route hook costs per request, in process,
// without sockets or a load generator. One Fastify app per limiter (memory stores, the same
// limits as the overhead scenario), one real request/reply pair taken from app.inject, then
// the route's limiting hooks called on it again and again, as Fastify calls them (a callback
// hook with `done`, an async hook awaited), the caller's identity rotating over 1 or 10,000
// keys. CPU time (process.cpuUsage) over the measured calls, per call. Each limiter and mode
// runs in a fresh child process, rounds interleaved, after an unmeasured warm-up.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import rateLimit from '@fastify/rate-limit'
import gcra from '../dist/esm/index.js'
import { LABELS } from './lib/labels.js'
import { main } from './lib/scenario.js'
import { fmt, spread } from './lib/stats.js'

export const LIMITERS = ['frl-memory', 'gcra-memory']
export const MODES = [1, 10_000]
const identity = (req) => req.headers['x-api-key'] ?? req.ip

/** A symbol a Fastify object holds, by its description. */
function symbolOf (object, description) {
  const found = Object.getOwnPropertySymbols(object).find(s => s.description === description)
  if (found === undefined) throw new Error(`no ${description} on this Fastify version's objects`)
  return found
}

/** In the child: per-call CPU µs of the limiter's route hooks, `calls` calls after `warm` unmeasured ones. */
async function measureHooks ({ limiter, keys, calls, warm }) {
  const app = Fastify({ logger: false })
  let config
  if (limiter === 'frl-memory') {
    await app.register(rateLimit, { global: false, keyGenerator: identity, cache: 20_000 })
    config = { rateLimit: { max: 1_000_000_000, timeWindow: 60_000 } }
  } else {
    await app.register(gcra, { store: 'memory', key: identity })
    config = { rateLimit: { limits: [{ max: 1_000_000, per: '1 second' }] } }
  }
  let captured
  app.get('/', { config }, async (request, reply) => { captured = { request, reply }; return { hello: 'world' } })
  await app.ready()
  const first = await app.inject({ method: 'GET', url: '/', headers: { 'x-api-key': 'first' } })
  if (first.statusCode !== 200 || captured === undefined) throw new Error(`${limiter}: the first request answered ${first.statusCode}`)
  const { request, reply } = captured
  const context = request[symbolOf(request, 'fastify.context')]
  const hooks = [...(context.onRequest ?? []), ...(context.preHandler ?? [])]
  if (hooks.length === 0) throw new Error(`${limiter}: the route has no limiting hook`)
  // what a fresh request would hold: the plugin's per-request marker, no headers yet
  const perRequest = limiter === 'frl-memory'
    ? [symbolOf(request, 'fastify.request.rateLimitRan'), false]
    : [symbolOf(request, 'fastify-gcra.state'), null]
  const headersAt = symbolOf(reply, 'fastify.reply.headers')
  const identities = Array.from({ length: keys }, (_, i) => `key-${i}`)
  // a hook that goes on calls done (a callback hook) or resolves (an async one); one that answers does neither
  let goneOn = 0
  const done = (error) => { if (error) throw error; goneOn++ }
  const run = async (n) => {
    for (let i = 0; i < n; i++) {
      request.headers['x-api-key'] = identities[i % keys]
      request[perRequest[0]] = perRequest[1]
      reply[headersAt] = {}
      for (const hook of hooks) {
        if (hook.length === 3) hook.call(app, request, reply, done)
        else {
          await hook.call(app, request, reply)
          goneOn++
        }
      }
    }
  }
  await run(warm)
  const before = process.cpuUsage()
  await run(calls)
  const used = process.cpuUsage(before)
  // every call must have gone on (admitted, at once) and have set the plugin's fields
  const headers = Object.keys(reply[headersAt])
  if (goneOn !== (warm + calls) * hooks.length || headers.length === 0) throw new Error(`${limiter}: ${goneOn} of ${(warm + calls) * hooks.length} hook calls went on, fields ${headers.join(',')}`)
  await app.close()
  return { usPerCall: (used.user + used.system) / calls, fields: headers }
}

export async function run ({ quick }) {
  const rounds = quick ? 2 : 6
  const calls = quick ? 200_000 : 1_000_000
  const warm = quick ? 50_000 : 200_000
  const runs = []
  for (let round = 0; round < rounds; round++) {
    for (const keys of MODES) {
      const order = LIMITERS.map((_, i) => LIMITERS[(i + round) % LIMITERS.length])
      for (const limiter of order) {
        const spec = JSON.stringify({ limiter, keys, calls, warm })
        const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', spec], { encoding: 'utf8', timeout: 120_000 })
        const { usPerCall, fields } = JSON.parse(out)
        runs.push({ round, keys, limiter, usPerCall, fields })
        process.stderr.write(`hooks r${round} keys=${keys} ${limiter}: ${usPerCall.toFixed(3)} µs/request (${fields.join(', ')})\n`)
      }
    }
  }
  const summary = MODES.map((keys) => {
    const of = (limiter) => spread(runs.filter(r => r.keys === keys && r.limiter === limiter).map(r => r.usPerCall))
    const mine = of('gcra-memory')
    const theirs = of('frl-memory')
    // per round, ours over theirs
    const ratios = spread([...Array(rounds).keys()].map((round) => {
      const pick = (limiter) => runs.find(r => r.round === round && r.keys === keys && r.limiter === limiter).usPerCall
      return pick('gcra-memory') / pick('frl-memory')
    }))
    return { keys, gcra: mine, frl: theirs, ratio: ratios }
  })
  return { name: 'hooks', quick, rounds, calls, warm, runs, summary }
}

const micros = (s) => s.n > 1 ? `${fmt(s.median, 2)} (${fmt(s.min, 2)}–${fmt(s.max, 2)})` : fmt(s.median, 2)

export function markdown (result) {
  const lines = [
    `### Hook cost: each plugin's route hook alone, in process (${result.rounds} round(s) × ${fmt(result.calls)} calls per limiter and mode)`,
    '',
    `| identities | ${LABELS['frl-memory']}, µs/request, median (min–max) | ${LABELS['gcra-memory']}, µs/request, median (min–max) | fastify-gcra ÷ @fastify/rate-limit, per round, median (min–max) |`,
    '|---:|---:|---:|---:|',
  ]
  for (const s of result.summary) lines.push(`| ${fmt(s.keys)} | ${micros(s.frl)} | ${micros(s.gcra)} | ${micros(s.ratio)} |`)
  lines.push('', 'The route hook each plugin adds (identity, decision, fields), called on one Fastify request and reply again and again in a process of its own, after ' + `${fmt(result.warm)} unmeasured calls; CPU time (\`process.cpuUsage()\`) per call. No sockets: what the plugins add around the hook (request decorators, writing their fields into the response) is not in it, and is in the overhead scenario.`)
  return lines.join('\n')
}

if (process.argv[2] === '--child') {
  process.stdout.write(JSON.stringify(await measureHooks(JSON.parse(process.argv[3]))))
  process.exit(0)
}
await main(import.meta.url, run)
