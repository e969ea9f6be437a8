// The example ML API: what a real inference service on fastify-gcra looks like.
import Fastify from 'fastify'
import underPressure from '@fastify/under-pressure'
import swagger from '@fastify/swagger'
import gcra from 'fastify-gcra'
import { Type } from '@sinclair/typebox'
import { FEATURES, trainModel } from './model.js'

/** Server-side key table: the tier comes from here, never from a header the caller sets. */
export const API_KEYS = {
  'demo-free-key': { owner: 'free demo user', tier: 'free' },
  'demo-premium-key': { owner: 'premium demo user', tier: 'premium' },
}

export const MAX_BATCH = 32

const Flower = Type.Tuple([Type.Number(), Type.Number(), Type.Number(), Type.Number()], {
  description: FEATURES.join(', ') + ' (cm)',
})

/** The service's limits; tests pass shorter ones so that waiting takes seconds, not minutes. */
export const LIMITS = {
  inference: ['20/minute'],
  // the heavy route: 3 a minute, paced to one a second (a steady stream for the "GPU")
  explain: ['3/minute', '1/second'],
  explainPremium: ['10/minute', '2/second'],
  other: ['30/minute'],
  global: ['200/day', '50/hour'],
}

/** How many explain calls run at once: per caller, and on the whole service (its "GPU"). */
export const EXPLAIN_SLOTS = { perCaller: 1, route: 4 }

/** An explain call that would wait at most this long for its slot is held, not refused. */
export const EXPLAIN_DELAY = '1s'

/**
 * Shadow mode from one setting (the `SHADOW` variable of `npm run demo`): '1', 'true' or
 * 'all' for every route; else a comma-separated list of route URLs ('/predict/explain').
 */
export function shadowSetting (text = '') {
  const value = text.trim()
  if (value === '' || value === '0' || value === 'false') return false
  if (value === '1' || value === 'true' || value === 'all') return true
  return value.split(',').map(url => url.trim()).filter(url => url !== '')
}

/**
 * `warmupMs`: for this long after start the model is "warming up" and inference routes admit
 * half their rate (tests start at full rate).
 */
export async function buildApp ({ redisUrl, logger = false, limits = LIMITS, prefix = 'ml-api', warmupMs = 0, shadow = false } = {}) {
  const app = Fastify({ logger })
  // a route in shadow mode is decided, charged and reported as if enforced, and served
  const shadowed = (url) => shadow === true || (Array.isArray(shadow) && shadow.includes(url))
  const model = trainModel()

  // Under pressure (event loop lagging), admit a quarter of the rates instead of failing
  // every request with 503: the limiter sheds the load per caller, fairly.
  await app.register(underPressure, { maxEventLoopDelay: 200, pressureHandler: () => undefined })

  // Identity first: an unknown key gets 401 before any inference or charge.
  app.addHook('onRequest', async (request, reply) => {
    const key = request.headers['x-api-key']
    if (key === undefined) return // anonymous: limited by IP (IPv6 by /64)
    const entry = typeof key === 'string' ? API_KEYS[key] : undefined
    if (entry === undefined) {
      return reply.code(401).send({ error: 'Unauthorized', message: 'unknown API key' })
    }
    request.rateLimitKey = `key:${key}`
    request.rateLimitTier = entry.tier
  })

  // OpenAPI document of the routes: fastify-gcra adds each limited route's 429/413 and
  // rate-limit headers to it (served as JSON at /documentation/json)
  await app.register(swagger, { openapi: { info: { title: 'Example ML API', version: '1.0.0' } } })

  await app.register(gcra, {
    store: redisUrl ? { redis: redisUrl } : 'memory',
    // every instance on one Redis shares these buckets
    prefix,
    tiers: { free: 1, premium: 5 },
    limits: limits.other,
    global: limits.global,
    pressureScale: 0.25,
    // Prometheus metrics at GET /metrics (exempt from limits; in production, serve them
    // where only your scraper reaches), and refusals in the log, at most 10 lines a second
    metrics: true,
    logRefusals: true,
    shadow: shadow === true,
  })

  app.get('/documentation/json', { config: { rateLimit: false }, schema: { hide: true } }, async () => app.swagger())

  app.get('/health', { config: { rateLimit: false } }, async () => ({ status: 'ok' }))

  app.get('/model', { config: { rateLimit: { shadow: shadowed('/model') } } }, async () => model.info)

  app.post('/predict', {
    schema: { body: Type.Object({ input: Flower }) },
    config: { rateLimit: { limits: limits.inference, scope: 'inference', shadow: shadowed('/predict') } },
  }, async (request) => ({ ...model.predict(request.body.input), quota: request.rateLimit?.remaining }))

  app.post('/predict/batch', {
    schema: { body: Type.Object({ inputs: Type.Array(Flower, { minItems: 1, maxItems: MAX_BATCH }) }) },
    config: { rateLimit: { limits: limits.inference, scope: 'inference', cost: (request) => request.body.inputs.length, shadow: shadowed('/predict/batch') } },
  }, async (request, reply) => {
    // charged up front at one unit per input; repeated inputs are computed once, and the
    // charge is settled at what was computed (the duplicates are refunded)
    const unique = new Map(request.body.inputs.map(input => [input.join(','), input]))
    const results = new Map([...unique].map(([id, input]) => [id, model.predict(input)]))
    await reply.rateLimit?.settle(unique.size)
    return { predictions: request.body.inputs.map(input => results.get(input.join(','))), cost: unique.size }
  })

  // The heavy one: many forest evaluations per call, so a stricter limit of its own. A call
  // that comes a little early is held until its slot (up to a second) instead of refused.
  app.post('/predict/explain', {
    schema: { body: Type.Object({ input: Flower }) },
    config: {
      rateLimit: {
        limits: limits.explain,
        tiers: { premium: limits.explainPremium },
        concurrency: EXPLAIN_SLOTS,
        delay: EXPLAIN_DELAY,
        shadow: shadowed('/predict/explain'),
      },
    },
  }, async (request) => ({ ...model.explain(request.body.input), heldMs: request.rateLimit?.delayedMs ?? 0 }))

  // a model warming up admits half its rate (setScale names the routes' scope, once they exist)
  if (warmupMs > 0) {
    app.rateLimiter.setScale(0.5, 'inference')
    const warm = setTimeout(() => app.rateLimiter.setScale(1, 'inference'), warmupMs)
    warm.unref()
    app.addHook('onClose', async () => clearTimeout(warm))
  }

  return app
}
