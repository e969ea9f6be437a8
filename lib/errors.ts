import createError from '@fastify/error'

/** A plugin option or a route's `config.rateLimit` is invalid. Thrown at registration. */
export const FST_GCRA_INVALID_OPTION = createError<[string, string, string]>(
  'FST_GCRA_INVALID_OPTION',
  'fastify-gcra: %s: expected %s, got %s',
  500,
  TypeError,
)

/** The route's cost function threw or returned something that is not a finite number >= 0. */
export const FST_GCRA_INVALID_COST = createError<[string, string, { cause: unknown }?]>(
  'FST_GCRA_INVALID_COST',
  'fastify-gcra: the cost of %s must be a finite number >= 0, got %s',
  500,
)

/** The `key` resolver threw or returned something that cannot identify a caller. */
export const FST_GCRA_INVALID_KEY = createError<[string]>(
  'FST_GCRA_INVALID_KEY',
  'fastify-gcra: the key resolver must return a string, a finite number or a non-empty array of strings, got %s',
  500,
)

/** The `tier` resolver returned something that is not a tier name (a string), null or undefined. */
export const FST_GCRA_INVALID_TIER = createError<[string]>(
  'FST_GCRA_INVALID_TIER',
  'fastify-gcra: the tier resolver must return a tier name, null or undefined, got %s',
  500,
)

/** The store did not answer within `storeTimeoutMs`. */
export const FST_GCRA_STORE_TIMEOUT = createError<[number]>(
  'FST_GCRA_STORE_TIMEOUT',
  'fastify-gcra: the store did not answer within %d ms',
  503,
)

/** The store is not called while the circuit breaker is open after consecutive failures. */
export const FST_GCRA_STORE_UNAVAILABLE = createError(
  'FST_GCRA_STORE_UNAVAILABLE',
  'fastify-gcra: the store is not called for now: it failed repeatedly (circuit open)',
  503,
)

/** The store answered with something the plugin cannot read. */
export const FST_GCRA_STORE_REPLY = createError<[string]>(
  'FST_GCRA_STORE_REPLY',
  'fastify-gcra: unexpected reply from the store: %s',
  503,
)

/**
 * The kind of a value, for errors that reach clients: numbers, booleans and null as
 * they are, anything else only by its type (a resolver's value may hold a secret).
 */
export function describeKind (value: unknown): string {
  if (value === null || typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string') return 'a string'
  if (typeof value === 'function') return 'a function'
  return `${typeof value === 'object' ? 'an object' : `a ${typeof value}`}`
}

/** Describe a value for an error message without dumping a secret or a 16 KiB string. */
export function describe (value: unknown): string {
  if (value === undefined) return 'undefined'
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value)
  if (typeof value === 'symbol') return value.toString()
  let text: string
  try {
    text = JSON.stringify(value) ?? String(value)
  } catch {
    text = Object.prototype.toString.call(value)
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

/** A `scale` function returned something that is not a number. */
export const FST_GCRA_INVALID_SCALE = createError<[string, string]>(
  'FST_GCRA_INVALID_SCALE',
  'fastify-gcra: %s must return a number in (0, 1], got %s',
  500,
)

/** `reply.rateLimit.settle()` was given something that is not a finite number >= 0, or called twice. */
export const FST_GCRA_INVALID_SETTLE = createError<[string]>(
  'FST_GCRA_INVALID_SETTLE',
  'fastify-gcra: settle(actual): %s',
  500,
  TypeError,
)
/** `options.metrics` is on, but the optional peer dependency prom-client cannot be loaded. */
export const FST_GCRA_NO_PROM_CLIENT = createError<[string, { cause: unknown }?]>(
  'FST_GCRA_NO_PROM_CLIENT',
  'fastify-gcra: options.metrics needs prom-client, an optional peer dependency: npm install prom-client@15 (%s)',
  500,
)

/**
 * At `ready()`: routes declare `config.rateLimit` where no fastify-gcra instance saw them
 * (declared before the plugin, after a `register` that was not awaited, or in a context
 * it does not reach), so they would never be limited.
 */
export const FST_GCRA_UNSEEN_ROUTE = createError<[string]>(
  'FST_GCRA_UNSEEN_ROUTE',
  'fastify-gcra: these routes declare config.rateLimit but fastify-gcra never saw them, so they would NOT be limited: %s. ' +
    'Register the plugin before the routes it limits and await it (`await app.register(gcra, options)`, then declare the routes), ' +
    'at the root or in a context that encloses them: it is wrapped with fastify-plugin, so it reaches its own context and every context registered after it inside that one. ' +
    'A route that must not be limited says config: { rateLimit: false }.',
  500,
)
