// Scenario 2, in process: what each plugin adds to a request, measured without sockets or a
// load generator sharing the cores, where a process's own CPU time per request is steady to a
// few per cent.
//
// Whole requests: one process holds three apps (bare Fastify, @fastify/rate-limit, fastify-gcra,
// the same route and limits as the overhead scenario) and sends each whole requests, a real
// http.IncomingMessage and ServerResponse on a socket that discards what is written, through
// Fastify's own router: routing, hooks, the handler, serialisation and the response head with
// the limiters' fields. The apps take turns in blocks of requests (the first one rotating each
// round), so a slow moment of the machine hits all three; CPU time (process.cpuUsage) per block,
// per request. Memory stores: one request at a time, 1 and 10,000 identities. Redis stores
// (each plugin's default client, the private Redis server): 100 requests in flight over 1,000
// identities, and the Redis server's CPU time (INFO cpu) per block beside the app's. Each mode
// runs in a few fresh processes.
//
// The route hook alone: one Fastify request and reply from app.inject, the route's limiting
// hooks called on it again and again, as Fastify calls them; the caller's identity rotating
// over 1 or 10,000 keys. Each limiter and mode in a fresh process, rounds interleaved.
import { execFileSync } from 'node:child_process'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import rateLimit from '@fastify/rate-limit'
import { Redis } from 'ioredis'
import gcra from '../dist/esm/index.js'
import { LIMITS, registerLimiter, routeConfig } from './lib/apps.js'
import { LABELS } from './lib/labels.js'
import { startRedis } from './lib/proc.js'
import { redisCpuSeconds } from './lib/redis-info.js'
import { main } from './lib/scenario.js'
import { fmt, median, spread } from './lib/stats.js'

export const HOOK_LIMITERS = ['frl-memory', 'gcra-memory']
export const HOOK_MODES = [1, 10_000]
/** Whole-request modes: the store, the identities and the requests in flight. */
export const WHOLE_MODES = [
  { store: 'memory', keys: 1, window: 1 },
  { store: 'memory', keys: 10_000, window: 1 },
  { store: 'redis', keys: 1_000, window: 100 },
]
const limitersOf = (store) => ['bare', `frl-${store}`, `gcra-${store}`]
const modeId = (m) => `${m.store}/${m.keys}/${m.window}`

/** An app of the bench: the overhead scenario's route and limits, behind `limiter`. */
async function appFor (limiter, redisPort) {
  const app = Fastify({ logger: false })
  const client = await registerLimiter(app, limiter, { gcra, rateLimit, redisPort })
  app.get('/', { config: routeConfig(limiter, LIMITS.overhead['/']) }, async () => ({ hello: 'world' }))
  await app.ready()
  return { app, client }
}

/** A socket that takes what a response writes and keeps only its last head. */
function nullSocket () {
  const socket = new Writable({
    write (chunk, encoding, callback) { socket.last = chunk; callback() },
    writev (chunks, callback) { socket.last = chunks[0]?.chunk; callback() },
  })
  Object.assign(socket, { remoteAddress: '127.0.0.1', remotePort: 40_000, encrypted: false, last: undefined })
  socket.setTimeout = () => socket
  socket.destroySoon = () => {}
  return socket
}

/** In the child: whole requests through three apps in one process, blocks interleaved. */
async function measureWhole ({ store, keys, window, rounds, block, redisPort }) {
  const limiters = limitersOf(store)
  const apps = []
  for (const limiter of limiters) apps.push(await appFor(limiter, redisPort))
  const admin = store === 'redis' ? new Redis({ host: '127.0.0.1', port: redisPort }) : undefined
  const sockets = Array.from({ length: window }, nullSocket)
  const ids = Array.from({ length: keys }, (_, i) => `key-${i}`)
  const statuses = new Map()
  const one = (app, i, socket) => new Promise((resolve) => {
    const req = new IncomingMessage(socket)
    req.method = 'GET'
    req.url = '/'
    req.httpVersionMajor = 1
    req.httpVersionMinor = 1
    req.httpVersion = '1.1'
    req.headers = { host: 'localhost', 'x-api-key': ids[i % keys] }
    req.rawHeaders = ['Host', 'localhost', 'X-Api-Key', ids[i % keys]]
    req.complete = true
    req.push(null)
    const res = new ServerResponse(req)
    res.shouldKeepAlive = true
    res.assignSocket(socket)
    res.once('finish', () => {
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      res.detachSocket(socket)
      resolve()
    })
    app.routing(req, res)
  })
  const send = async (app, n) => {
    let next = 0
    await Promise.all(sockets.map(async (socket) => { while (next < n) await one(app, next++, socket) }))
  }
  const redisCpuUs = async () => admin === undefined ? NaN : redisCpuSeconds(await admin.info('cpu')) * 1e6
  // unmeasured first: each app's hot path compiled before the rounds
  for (const { app } of apps) await send(app, block * 2)
  const heads = apps.map(() => '')
  const cpu = limiters.map(() => [])
  const redisCpu = limiters.map(() => [])
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < apps.length; k++) {
      const a = (k + round) % apps.length
      const redisBefore = await redisCpuUs()
      const before = process.cpuUsage()
      await send(apps[a].app, block)
      const used = process.cpuUsage(before)
      redisCpu[a][round] = (await redisCpuUs() - redisBefore) / block
      cpu[a][round] = (used.user + used.system) / block
      heads[a] = String(sockets[0].last ?? '').split('\r\n\r\n')[0]
    }
  }
  for (const { app, client } of apps) {
    await app.close()
    client?.disconnect()
  }
  admin?.disconnect()
  return { limiters, cpu, redisCpu, heads, statuses: Object.fromEntries(statuses) }
}

/** A symbol a Fastify object holds, by its description. */
function symbolOf (object, description) {
  const found = Object.getOwnPropertySymbols(object).find(s => s.description === description)
  if (found === undefined) throw new Error(`no ${description} on this Fastify version's objects`)
  return found
}

/** In the child: per-call CPU µs of the limiter's route hooks, `calls` calls after `warm` unmeasured ones. */
async function measureHooks ({ limiter, keys, calls, warm }) {
  const app = Fastify({ logger: false })
  await registerLimiter(app, limiter, { gcra, rateLimit })
  // the hook is called faster than the overhead route's million a second: a limit no run reaches
  const config = routeConfig(limiter, { gcra: { max: 1_000_000_000, per: '1 second' }, frl: LIMITS.overhead['/'].frl })
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

const child = (spec) => JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', JSON.stringify(spec)], { encoding: 'utf8', timeout: 300_000, maxBuffer: 16 * 2 ** 20 }))

/** One mode's processes, summed up: µs per request, what each limiter adds over bare Fastify, and fastify-gcra's over theirs. */
export function summariseWhole (mode, processes) {
  const [bare, frl, mine] = limitersOf(mode.store)
  const perProcess = processes.map((p) => {
    const at = (limiter) => p.limiters.indexOf(limiter)
    const cpuOf = (limiter) => median(p.cpu[at(limiter)])
    // what a limiter adds: per round, its block minus bare Fastify's block of the same round
    const addedOf = (limiter) => median(p.cpu[at(limiter)].map((us, round) => us - p.cpu[at(bare)][round]))
    const redisOf = (limiter) => median(p.redisCpu[at(limiter)])
    return {
      cpu: { [bare]: cpuOf(bare), [frl]: cpuOf(frl), [mine]: cpuOf(mine) },
      added: { [frl]: addedOf(frl), [mine]: addedOf(mine) },
      redis: { [frl]: redisOf(frl), [mine]: redisOf(mine) },
    }
  })
  const over = (pick) => spread(perProcess.map(pick))
  return {
    ...mode,
    cpu: Object.fromEntries([bare, frl, mine].map(l => [l, over(p => p.cpu[l])])),
    added: Object.fromEntries([frl, mine].map(l => [l, over(p => p.added[l])])),
    addedRatio: over(p => p.added[mine] / p.added[frl]),
    redisCpu: Object.fromEntries([frl, mine].map(l => [l, over(p => p.redis[l])])),
    redisRatio: over(p => p.redis[mine] / p.redis[frl]),
  }
}

export async function run ({ quick }) {
  const processes = quick ? 1 : 3
  const rounds = quick ? 3 : 12
  const block = quick ? 5_000 : 20_000
  const redis = await startRedis()
  const whole = []
  try {
    for (let p = 0; p < processes; p++) {
      for (const mode of WHOLE_MODES) {
        const out = child({ whole: true, ...mode, rounds, block, redisPort: redis.port })
        const expected = rounds * block + 2 * block
        for (const [i, limiter] of out.limiters.entries()) {
          // every request admitted and answered; each limiter's fields in its responses
          if (out.statuses['200'] !== expected * out.limiters.length) throw new Error(`${modeId(mode)}: statuses ${JSON.stringify(out.statuses)}, expected ${expected * out.limiters.length} × 200`)
          if (limiter !== 'bare' && !/ratelimit/i.test(out.heads[i])) throw new Error(`${limiter}: no rate-limit field in ${out.heads[i]}`)
        }
        whole.push({ process: p, ...mode, limiters: out.limiters, cpu: out.cpu, redisCpu: out.redisCpu })
        const med = out.limiters.map((l, i) => `${l} ${median(out.cpu[i]).toFixed(2)}`).join(', ')
        process.stderr.write(`inprocess whole p${p} ${modeId(mode)}: ${med} µs/request\n`)
      }
    }
  } finally {
    await redis.stop()
  }
  const hookRounds = quick ? 2 : 6
  const calls = quick ? 200_000 : 1_000_000
  const warm = quick ? 50_000 : 200_000
  const hookRuns = []
  for (let round = 0; round < hookRounds; round++) {
    for (const keys of HOOK_MODES) {
      const order = HOOK_LIMITERS.map((_, i) => HOOK_LIMITERS[(i + round) % HOOK_LIMITERS.length])
      for (const limiter of order) {
        const { usPerCall, fields } = child({ limiter, keys, calls, warm })
        hookRuns.push({ round, keys, limiter, usPerCall, fields })
        process.stderr.write(`inprocess hook r${round} keys=${keys} ${limiter}: ${usPerCall.toFixed(3)} µs/request (${fields.join(', ')})\n`)
      }
    }
  }
  const hooks = HOOK_MODES.map((keys) => {
    const of = (limiter) => spread(hookRuns.filter(r => r.keys === keys && r.limiter === limiter).map(r => r.usPerCall))
    const ratio = spread([...Array(hookRounds).keys()].map((round) => {
      const pick = (limiter) => hookRuns.find(r => r.round === round && r.keys === keys && r.limiter === limiter).usPerCall
      return pick('gcra-memory') / pick('frl-memory')
    }))
    return { keys, gcra: of('gcra-memory'), frl: of('frl-memory'), ratio }
  })
  return {
    name: 'inprocess',
    quick,
    processes,
    rounds,
    block,
    whole,
    wholeSummary: WHOLE_MODES.map(mode => summariseWhole(mode, whole.filter(w => modeId(w) === modeId(mode)))),
    hookRounds,
    calls,
    warm,
    hookRuns,
    hooks,
  }
}

const micros = (s) => s.n > 1 ? `${fmt(s.median, 2)} (${fmt(s.min, 2)}–${fmt(s.max, 2)})` : fmt(s.median, 2)
const identitiesOf = (keys) => `${fmt(keys)} identit${keys === 1 ? 'y' : 'ies'}`

export function markdown (result) {
  const memory = result.wholeSummary.filter(s => s.store === 'memory')
  const redis = result.wholeSummary.filter(s => s.store === 'redis')
  const lines = [
    `### In process: whole requests and the route hook (${result.processes} process(es) per mode × ${result.rounds} round(s) × ${fmt(result.block)} requests per app)`,
    '',
    '**Memory stores, one request at a time** (CPU µs per request: median of the processes, min–max in brackets)',
    '',
    `| identities | ${LABELS.bare} | ${LABELS['frl-memory']}, added | ${LABELS['gcra-memory']}, added | fastify-gcra ÷ @fastify/rate-limit, added |`,
    '|---:|---:|---:|---:|---:|',
  ]
  for (const s of memory) lines.push(`| ${fmt(s.keys)} | ${micros(s.cpu.bare)} | ${micros(s.added['frl-memory'])} | ${micros(s.added['gcra-memory'])} | ${micros(s.addedRatio)} |`)
  for (const s of redis) {
    lines.push('', `**Redis stores, each plugin's default client, ${fmt(s.window)} requests in flight, ${identitiesOf(s.keys)}**`, '',
      '| limiter | app CPU µs/request | added over bare Fastify | Redis CPU µs/request |',
      '|---|---:|---:|---:|',
      `| ${LABELS.bare} | ${micros(s.cpu.bare)} | – | – |`)
    for (const l of ['frl-redis', 'gcra-redis']) lines.push(`| ${LABELS[l]} | ${micros(s.cpu[l])} | ${micros(s.added[l])} | ${micros(s.redisCpu[l])} |`)
    lines.push('', `fastify-gcra ÷ @fastify/rate-limit on Redis: app CPU added ${micros(s.addedRatio)} ×; Redis CPU ${micros(s.redisRatio)} ×.`)
  }
  lines.push('', 'Whole requests: three apps in one process (bare Fastify and each plugin, the overhead scenario\'s route and limits), each sent whole requests through Fastify\'s router on a socket that discards what is written; the apps take turns in blocks, and "added" is each block minus bare Fastify\'s block of the same round. What a plugin adds to routing, hooks, decorators and the response head is in it; the kernel\'s socket work and a load generator are not.')
  lines.push('', `**The route hook alone** (${result.hookRounds} round(s) × ${fmt(result.calls)} calls per limiter and mode, each in a fresh process)`, '',
    `| identities | ${LABELS['frl-memory']}, µs/request, median (min–max) | ${LABELS['gcra-memory']}, µs/request, median (min–max) | fastify-gcra ÷ @fastify/rate-limit, per round, median (min–max) |`,
    '|---:|---:|---:|---:|')
  for (const s of result.hooks) lines.push(`| ${fmt(s.keys)} | ${micros(s.frl)} | ${micros(s.gcra)} | ${micros(s.ratio)} |`)
  lines.push('', `The route hook each plugin adds (identity, decision, fields), called on one Fastify request and reply again and again, after ${fmt(result.warm)} unmeasured calls; CPU time (\`process.cpuUsage()\`) per call.`)
  return lines.join('\n')
}

if (process.argv[2] === '--child') {
  const spec = JSON.parse(process.argv[3])
  process.stdout.write(JSON.stringify(spec.whole ? await measureWhole(spec) : await measureHooks(spec)))
  process.exit(0)
}
await main(import.meta.url, run)
