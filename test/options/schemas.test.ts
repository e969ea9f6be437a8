import { describe, expect, it } from 'vitest'
import { FST_GCRA_INVALID_OPTION } from '../../lib/index.js'
import { assertValid, checkLimits, checkOptions, checkRouteConfig, formatPath } from '../../lib/options/schemas.js'

/** The message of the coded error a check throws, or undefined when the value passes. */
function failure (check: Parameters<typeof assertValid>[0], value: unknown, root: string): string | undefined {
  try {
    assertValid(check, value, root)
    return undefined
  } catch (error) {
    expect(error).toBeInstanceOf(FST_GCRA_INVALID_OPTION)
    return (error as Error).message
  }
}

describe('option paths', () => {
  it('read a JSON pointer as the option a user wrote', () => {
    expect(formatPath('options', '/limits/0/max')).toBe('options.limits[0].max')
    expect(formatPath('route GET /: config.rateLimit', '/tiers/premium')).toBe('route GET /: config.rateLimit.tiers.premium')
    expect(formatPath('options', '/tiers/pro~1plus')).toBe('options.tiers["pro/plus"]')
    expect(formatPath('options', '/tiers/a~0b')).toBe('options.tiers["a~b"]')
    expect(formatPath('', '')).toBe('(root)')
  })
})

describe('schema checks', () => {
  it('pass what the public types allow', () => {
    expect(failure(checkOptions, { store: { memory: { maxKeys: 10 } }, limits: ['10/minute', { max: 5, per: '30s', burst: 8, name: 'x' }], tiers: { free: 1, premium: { multiplier: 5 } }, key: () => 'k', headers: false }, 'options')).toBeUndefined()
    expect(failure(checkRouteConfig, false, 'route')).toBeUndefined()
    expect(failure(checkRouteConfig, { cost: (r: unknown) => r, tiers: { premium: { limits: ['1/second'], concurrency: 2 } }, concurrency: { route: 4 } }, 'route')).toBeUndefined()
    // a cost of 0 is a free request; below it is an error
    expect(failure(checkRouteConfig, { cost: 0 }, 'route')).toBeUndefined()
    expect(failure(checkRouteConfig, { cost: -0.001 }, 'route')).toBe('fastify-gcra: route.cost: expected a finite number >= 0 or a function of the request, got -0.001')
  })

  it('name the deepest failing field of a union, what was expected and what came', () => {
    expect(failure(checkOptions, { limits: [{ max: 0, per: 1000 }] }, 'options')).toBe('fastify-gcra: options.limits[0].max: expected an integer >= 1, got 0')
    expect(failure(checkOptions, { store: { redis: 42 } }, 'options')).toMatch(/^fastify-gcra: options\.store\.redis: expected an ioredis Redis or Cluster instance, or a URL 'redis:\/\/\.\.\.', got 42$/)
    expect(failure(checkRouteConfig, { concurrency: 0 }, 'route GET /: config.rateLimit')).toMatch(/^fastify-gcra: route GET \/: config\.rateLimit\.concurrency: expected .*got 0$/)
  })

  it('list the known keys for an unknown one, and name it', () => {
    expect(failure(checkOptions, { limit: ['10/minute'] }, 'options')).toMatch(/^fastify-gcra: options\.limit: expected one of the known keys \(store, key, tier, tiers, limits, global, .*\), got 'limit'$/)
  })

  it('check functions as functions', () => {
    expect(failure(checkOptions, { key: 'x-api-key' }, 'options')).toBe("fastify-gcra: options.key: expected a function of the request, got \"x-api-key\"")
    expect(failure(checkRouteConfig, { settle: 3 }, 'r')).toBe('fastify-gcra: r.settle: expected a function (request, reply) => the actual cost, got 3')
  })

  it('check run-time limits with the same schema', () => {
    expect(failure(checkLimits, ['10/minute', { max: 1, per: 60_000 }], 'rateLimiter limits')).toBeUndefined()
    expect(failure(checkLimits, '10/minute', 'rateLimiter limits')).toMatch(/^fastify-gcra: rateLimiter limits: expected an array of limits/)
  })
})
