// An app server for the benchmarks, in a process of its own. argv[2] (JSON):
//   limiter  'bare' | 'frl-memory' | 'frl-redis' | 'frl-redis-pipe' | 'gcra-memory' | 'gcra-redis' | 'gcra-redis-pipe'
//   app      'overhead' (GET /, admits everything) | 'attack' (GET /good admits, GET /bad 10/minute)
//            | 'accuracy' (GET /, 100/second, burst 20 for GCRA; a 1 s window of 100 for @fastify/rate-limit)
//   redisPort  the private Redis, for the Redis limiters
//   record   keep the times of admitted requests (accuracy)
// Tells the parent { port } over IPC once listening; answers { type: 'report' } with what it recorded
// and { type: 'cpu' } with { type: 'cpu', usage: process.cpuUsage() }.
import Fastify from 'fastify'
import rateLimit from '@fastify/rate-limit'
import gcra from '../../dist/esm/index.js'
import { RedisStore } from '../../dist/esm/stores/redis.js'
import { LIMITS, registerLimiter, routeConfig } from './apps.js'

const config = JSON.parse(process.argv[2])
const { limiter, app: kind = 'overhead', redisPort, record = false } = config
const nowUs = () => Math.floor((performance.timeOrigin + performance.now()) * 1000)

// admitted requests: local clock (all limiters) and, for fastify-gcra on Redis, the Redis clock of the decision
const admittedUs = []
const admittedRedisUs = []
if (record && limiter.startsWith('gcra-redis')) {
  // every decision asked of Redis goes through decideThen (decide too)
  const decideThen = RedisStore.prototype.decideThen
  RedisStore.prototype.decideThen = function (keys, capacitiesUs, incrementsUs, charge, slackUs, resolve, reject) {
    decideThen.call(this, keys, capacitiesUs, incrementsUs, charge, slackUs, (reply) => {
      if (charge && reply.allowed) admittedRedisUs.push(reply.nowUs)
      resolve(reply)
    }, reject)
  }
}

const app = Fastify({ logger: false })
const client = await registerLimiter(app, limiter, { gcra, rateLimit, redisPort })

if (record) {
  app.addHook('preHandler', (req, reply, done) => { admittedUs.push(nowUs()); done() })
}

for (const [url, limits] of Object.entries(LIMITS[kind])) {
  app.get(url, { config: routeConfig(limiter, limits) }, async () => ({ hello: 'world' }))
}

await app.listen({ port: 0, host: '127.0.0.1' })
process.send({ port: app.server.address().port })

let closing = false
async function close () {
  if (closing) return
  closing = true
  setTimeout(() => process.exit(1), 3000).unref()
  await app.close()
  client?.disconnect()
  process.exit(0)
}

process.on('message', (message) => {
  // this process's own CPU time so far (µs, all its threads): read before and after a load run
  if (message?.type === 'cpu') return process.send({ type: 'cpu', usage: process.cpuUsage() })
  if (message?.type !== 'report') return
  process.send({ admittedUs, admittedRedisUs, stats: app.rateLimiter?.stats() ?? null })
})
process.once('SIGTERM', close)
process.once('SIGINT', close)
process.once('disconnect', close)
