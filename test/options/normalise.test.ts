import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import gcra, { FST_GCRA_INVALID_OPTION, type FastifyGcraOptions } from '../../lib/index.js'
import { normaliseOptions } from '../../lib/options/normalise.js'

async function register (options: unknown): Promise<void> {
  const app = Fastify()
  try {
    await app.register(gcra, options as FastifyGcraOptions)
    await app.ready()
  } finally {
    await app.close()
  }
}

async function route (config: unknown, options: Partial<FastifyGcraOptions> = {}): Promise<void> {
  const app = Fastify()
  try {
    await app.register(gcra, options)
    app.get('/r', { config: { rateLimit: config as never } }, async () => 'ok')
    app.get('/other', { config: { rateLimit: { limits: ['9/minute'], scope: 'shared' } } }, async () => 'ok')
    await app.ready()
  } finally {
    await app.close()
  }
}

describe('plugin options are validated at registration', () => {
  it.each([
    [{ limts: ['1/minute'] }, "options.limts: expected one of the known keys (store, key, tier, tiers, limits, global, headers, prefix, keySecret, hook, storeTimeoutMs, onStoreError, delay, maxDelayed, shadow, errorResponseBuilder, scale, pressureScale, concurrencyLeaseMs, metrics, logRefusals, openapi), got 'limts'"],
    [{ limits: '10/minute' }, "options.limits: expected an array of limits (a limit: a string like '10/minute', '10/min' or '100/15m', or { max, per, burst?, name? }), got \"10/minute\""],
    [{ limits: ['10/mintue'] }, "options.limits[0]: expected a limit like '10/minute', '10/min', '100/15 minutes' or '100/15m' (a count, '/', then a duration such as 'second', '30s', '2 hours' or '1d'), got \"10/mintue\""],
    [{ limits: [{ max: 0, per: '1m' }] }, 'options.limits[0].max: expected an integer >= 1, got 0'],
    [{ limits: [{ max: 'abc', per: '1m' }] }, 'options.limits[0].max: expected an integer >= 1, got "abc"'],
    [{ limits: [{ max: 1.5, per: '1m' }] }, 'options.limits[0].max: expected an integer >= 1, got 1.5'],
    [{ limits: [{ max: 5, per: 'soon' }] }, "options.limits[0].per: expected a whole number of milliseconds >= 1 or a duration such as '1 minute', '30s', '15 minutes', got \"soon\""],
    [{ limits: [{ max: 5, per: 0 }] }, "options.limits[0].per: expected milliseconds (an integer >= 1) or a duration such as '1 minute' or '30s', got 0"],
    [{ limits: [{ max: 5, per: '1m', burst: 0 }] }, 'options.limits[0].burst: expected an integer >= 1, got 0'],
    [{ limits: [{ max: 5, per: '1m', extra: 1 }] }, "options.limits[0].extra: expected one of the known keys (max, per, burst, name), got 'extra'"],
    [{ limits: ['1/minute', { max: 1, per: 60_000 }] }, "options.limits[1]: expected limits with distinct names (give one a name), got a second limit named '1/minute'"],
    [{ global: [{ max: 5, per: '1m', name: 'bad"name' }] }, 'options.global[0].name: expected a name of 1 to 64 printable ASCII characters without \'"\' or \'\\\', got "bad\\"name"'],
    [{ tiers: { premium: 0 } }, 'options.tiers.premium: expected a multiplier: a finite number > 0 or { multiplier }, got 0'],
    [{ tiers: { premium: Number.NaN } }, 'options.tiers.premium: expected a multiplier: a finite number > 0 or { multiplier }, got NaN'],
    [{ tiers: { premium: { multiplier: -5 } } }, 'options.tiers.premium.multiplier: expected a finite number > 0, got -5'],
    [{ tiers: { premium: '5' } }, 'options.tiers.premium: expected a multiplier: a finite number > 0 or { multiplier }, got "5"'],
    [{ store: 'redis' }, "options.store: expected 'memory', { memory: { maxKeys? } } or { redis: client | 'redis://...' }, got \"redis\""],
    [{ store: { redis: 'localhost:6379' } }, "options.store.redis: expected a URL 'redis://...' or 'rediss://...', got \"localhost:6379\""],
    [{ store: { redis: {} } }, 'options.store.redis: expected an ioredis Redis or Cluster instance, got "[object Object]"'],
    [{ store: { memory: { maxKeys: 0 } } }, 'options.store.memory.maxKeys: expected an integer >= 1, got 0'],
    [{ key: 'x-api-key' }, 'options.key: expected a function of the request, got "x-api-key"'],
    [{ tier: 'premium' }, 'options.tier: expected a function of the request, got "premium"'],
    [{ headers: 'ietf' }, "options.headers: expected 'draft', 'legacy', 'both' or false, got \"ietf\""],
    [{ headers: true }, "options.headers: expected 'draft', 'legacy', 'both' or false, got true"],
    [{ prefix: 'app{1}' }, "options.prefix: expected a string without '{' or '}' (the plugin places the Cluster hash tag), got \"app{1}\""],
    [{ keySecret: 'short' }, 'options.keySecret: expected a string of at least 16 characters, got "short"'],
    [{ hook: 'onSend' }, "options.hook: expected 'onRequest' or 'preHandler', got \"onSend\""],
    [{ storeTimeoutMs: 0 }, 'options.storeTimeoutMs: expected an integer from 1 to 2147483647 (milliseconds), got 0'],
    [{ storeTimeoutMs: 2 ** 31 }, 'options.storeTimeoutMs: expected an integer from 1 to 2147483647 (milliseconds), got 2147483648'],
    [{ onStoreError: 'fallback' }, "options.onStoreError: expected 'allow', 'deny' or 'local', got \"fallback\""],
    [{ delay: -1 }, "options.delay: expected milliseconds (an integer from 0 to 2147483647) or a duration such as '500ms' or '2s', got -1"],
    [{ delay: 'soon' }, "options.delay: expected a duration such as '500ms' or '2s' (at most 2147483647 ms), got \"soon\""],
    [{ delay: '30 days' }, "options.delay: expected a duration such as '500ms' or '2s' (at most 2147483647 ms), got \"30 days\""],
    [{ maxDelayed: -1 }, 'options.maxDelayed: expected an integer from 0 to 1000000, got -1'],
    [{ shadow: 1 }, 'options.shadow: expected true or false, got 1'],
    [{ errorResponseBuilder: {} }, 'options.errorResponseBuilder: expected a function (request, context) => body, got {}'],
  ])('%j', async (options, message) => {
    const error = await register(options).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(FST_GCRA_INVALID_OPTION)
    expect((error as Error).message).toBe(`fastify-gcra: ${message}`)
    expect((error as { code: string }).code).toBe('FST_GCRA_INVALID_OPTION')
  })

  it('accepts every documented form, and returns a frozen copy without touching the caller\'s object', () => {
    const options: FastifyGcraOptions = {
      store: { memory: { maxKeys: 10 } },
      key: (req) => req.ip,
      tier: async () => null,
      tiers: { free: 1, premium: { multiplier: 5 }, trial: 0.5 },
      limits: ['100/minute', { max: 10, per: '30s', burst: 20, name: 'bursty' }],
      global: ['200/day', '50/hour'],
      headers: 'both',
      prefix: 'myapp',
      hook: 'preHandler',
      storeTimeoutMs: 250,
      onStoreError: 'deny',
      errorResponseBuilder: () => ({}),
    }
    const copy = structuredClone({ ...options, key: undefined, tier: undefined, errorResponseBuilder: undefined })
    const normalised = normaliseOptions(options)
    expect(Object.isFrozen(normalised)).toBe(true)
    expect(normalised.global.map(l => l.name)).toEqual(['global 200/day', 'global 50/hour'])
    expect(normalised.tiers).toEqual(new Map([['free', 1], ['premium', 5], ['trial', 0.5]]))
    expect({ ...options, key: undefined, tier: undefined, errorResponseBuilder: undefined }).toEqual(copy)
  })

  it('defaults with ?? so that 0-like values are not silently replaced', () => {
    const normalised = normaliseOptions({})
    // a failing store is never silently unlimited: 'local' unless told otherwise
    expect(normalised).toMatchObject({ headers: 'draft', prefix: 'gcra', hook: 'onRequest', storeTimeoutMs: 100, onStoreError: 'local', limits: undefined, global: [] })
    expect(normaliseOptions({ onStoreError: 'allow' }).onStoreError).toBe('allow')
    expect(normaliseOptions({ headers: false }).headers).toBe(false)
    expect(normaliseOptions({ prefix: '' }).prefix).toBe('')
  })
})

describe('route configs are validated when the route is registered', () => {
  it.each([
    [{ limits: ['ten/minute'] }, "route GET /r: config.rateLimit.limits[0]: expected a limit like '10/minute', '10/min', '100/15 minutes' or '100/15m' (a count, '/', then a duration such as 'second', '30s', '2 hours' or '1d'), got \"ten/minute\""],
    [{ cost: -1 }, 'route GET /r: config.rateLimit.cost: expected a finite number >= 0 or a function of the request, got -1'],
    [{ cost: -0.5 }, 'route GET /r: config.rateLimit.cost: expected a finite number >= 0 or a function of the request, got -0.5'],
    [{ cost: Number.NaN }, 'route GET /r: config.rateLimit.cost: expected a finite number >= 0 or a function of the request, got NaN'],
    [{ cost: Number.POSITIVE_INFINITY }, 'route GET /r: config.rateLimit.cost: expected a finite number >= 0 or a function of the request, got Infinity'],
    [{ cost: '2' }, 'route GET /r: config.rateLimit.cost: expected a finite number >= 0 or a function of the request, got "2"'],
    [{ scope: '' }, 'route GET /r: config.rateLimit.scope: expected a non-empty string of at most 128 characters, got ""'],
    [{ delay: '1 fortnight' }, "route GET /r: config.rateLimit.delay: expected a duration such as '500ms' or '2s' (at most 2147483647 ms), got \"1 fortnight\""],
    [{ delay: 1.5 }, "route GET /r: config.rateLimit.delay: expected milliseconds (an integer from 0 to 2147483647) or a duration such as '500ms' or '2s', got 1.5"],
    [{ limit: ['1/minute'] }, "route GET /r: config.rateLimit.limit: expected one of the known keys (limits, cost, scope, onStoreError, tiers, concurrency, settle, scale, delay, shadow), got 'limit'"],
    [true, 'route GET /r: config.rateLimit: expected false or { limits?, cost?, scope?, tiers?, onStoreError?, concurrency?, settle?, scale?, delay?, shadow? }, got true'],
    [{ limits: ['1/minute'], tiers: { gold: ['5/minute'] } }, 'route GET /r: config.rateLimit.tiers: expected a tier declared in the plugin\'s tiers (premium), got "gold"'],
    [{ limits: ['1/minute'], tiers: { premium: '5/minute' } }, "route GET /r: config.rateLimit.tiers.premium: expected an array of limits or { limits?, concurrency? }, got \"5/minute\""],
    [{ limits: ['1/minute'], onStoreError: 'ignore' }, "route GET /r: config.rateLimit.onStoreError: expected 'allow', 'deny' or 'local', got \"ignore\""],
    [{ limits: ['1/minute'], scope: 'shared' }, "route GET /other: config.rateLimit: expected the same limits, tier limits and concurrency as the other routes of scope 'shared', got different ones"],
    [{ limits: [{ max: 1, per: '1m', name: 'global 1/minute' }] }, "route GET /r: config.rateLimit: expected limit names distinct from the global limits' names, got 'global 1/minute' twice"],
  ])('%j', async (config, message) => {
    const error = await route(config, { tiers: { premium: 5 }, global: ['1/minute'] }).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(FST_GCRA_INVALID_OPTION)
    expect((error as Error).message).toBe(`fastify-gcra: ${message}`)
  })

  it('accepts a cost of 0 (a free request) and the limit spellings a duration takes', async () => {
    await expect(route({ limits: ['10/minute'], cost: 0 })).resolves.toBeUndefined()
    await expect(route({ limits: ['10/min', '100/15m', '5/30s', '10/2h', '1000/1d', '50/3 hours'] })).resolves.toBeUndefined()
    expect(normaliseOptions({ limits: ['10/min', '100/15m'], global: ['1000/1d'] })).toMatchObject({
      limits: [{ name: '10/minute', perMs: 60_000 }, { name: '100/15 minutes', perMs: 900_000 }],
      global: [{ name: 'global 1000/day', perMs: 86_400_000 }],
    })
    // two spellings of one limit are one name: a second one is a duplicate, as before
    expect(() => normaliseOptions({ limits: ['10/min', '10/1 minute'] })).toThrow("options.limits[1]: expected limits with distinct names (give one a name), got a second limit named '10/minute'")
  })

  it('needs some limit for every route and tier: {} takes the global ones, and nothing at all is an error', async () => {
    await expect(route({}, { global: ['1/minute'] })).resolves.toBeUndefined()
    await expect(route({ limits: [] }, { global: ['1/minute'] })).resolves.toBeUndefined()
    await expect(route({ limits: [] })).rejects.toThrow("config.rateLimit: expected at least one limit: the route's own, the plugin's limits or global (or a concurrency limit), got none")
    await expect(route({ limits: ['1/minute'], tiers: { premium: [] } }, { tiers: { premium: 5 } })).rejects.toThrow('expected at least one limit')
  })
})
