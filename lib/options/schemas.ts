/**
 * TypeBox schemas of the plugin options and of a route's `config.rateLimit`, with the
 * compiled checks and the one function that turns a failed check into a coded error.
 * Each schema's `Static<>` is the public type of `types.ts` (test/types/schemas.ts checks it):
 * what a schema cannot describe (functions, clients, registries) is typed with `Type.Unsafe`.
 */
import { Type, type TSchema, type TUnsafe } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { ValueErrorType, type ValueError, type ValueErrorIterator } from '@sinclair/typebox/errors'
import type { Cluster, Redis } from 'ioredis'
import { FST_GCRA_INVALID_OPTION, describe } from '../errors.js'
import type { LimitSpec } from '../limits/limit.js'
import type { CostSetting, FastifyGcraOptions, MetricsRegistry, ScaleFunction, SettleFunction } from './types.js'

/** A schema checked as written, typed as `T` (a function, a client: what JSON schema cannot say). */
const typed = <T>(schema: TSchema): TUnsafe<T> => Type.Unsafe<T>(schema)

const LIMIT_WORDS = "a limit: a string like '10/minute', '10/min' or '100/15m', or { max, per, burst?, name? }"

const resolver = <T>(): TUnsafe<T> => typed<T>(Type.Function([Type.Any()], Type.Any(), { description: 'a function of the request' }))

export const LimitSchema = typed<LimitSpec>(Type.Union([
  Type.String(),
  Type.Object({
    max: Type.Integer({ minimum: 1, description: 'an integer >= 1' }),
    per: Type.Union([Type.Integer({ minimum: 1 }), Type.String()], {
      description: "milliseconds (an integer >= 1) or a duration such as '1 minute' or '30s'",
    }),
    burst: Type.Optional(Type.Integer({ minimum: 1, description: 'an integer >= 1' })),
    name: Type.Optional(Type.String({ description: 'a string' })),
  }, { additionalProperties: false }),
], { description: LIMIT_WORDS }))

export const LimitsSchema = Type.Array(LimitSchema, { description: `an array of limits (${LIMIT_WORDS})` })

const Multiplier = Type.Number({ exclusiveMinimum: 0, description: 'a finite number > 0' })

export const TiersSchema = Type.Record(Type.String(), Type.Union([
  Multiplier,
  Type.Object({ multiplier: Multiplier }, { additionalProperties: false }),
], { description: 'a multiplier: a finite number > 0 or { multiplier }' }), {
  description: 'an object of tier names to multipliers, e.g. { free: 1, premium: 5 }',
})

const RedisClient = typed<Redis | Cluster>(Type.Object({}, { description: 'an ioredis Redis or Cluster instance' }))

export const StoreSchema = Type.Union([
  Type.Literal('memory'),
  Type.Object({
    memory: Type.Object({
      maxKeys: Type.Optional(Type.Integer({ minimum: 1, description: 'an integer >= 1' })),
    }, { additionalProperties: false }),
  }, { additionalProperties: false }),
  Type.Object({
    redis: Type.Union([Type.String(), RedisClient], { description: "an ioredis Redis or Cluster instance, or a URL 'redis://...'" }),
  }, { additionalProperties: false }),
], { description: "'memory', { memory: { maxKeys? } } or { redis: client | 'redis://...' }" })

const OnStoreError = Type.Union([Type.Literal('allow'), Type.Literal('deny'), Type.Literal('local')], {
  description: "'allow', 'deny' or 'local'",
})

const Slots = Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'an integer from 1 to 1000000' })

const ConcurrencySchema = Type.Union([
  Slots,
  Type.Object({
    perCaller: Type.Optional(Slots),
    route: Type.Optional(Slots),
  }, { additionalProperties: false, minProperties: 1 }),
], { description: 'requests in flight: an integer >= 1 (per caller) or { perCaller?, route? }' })

/** A hold in ms (an integer from 0) or a duration string (`'500ms'`, `'2s'`): checked by `normalise.ts`. */
const Delay = Type.Union([
  Type.Integer({ minimum: 0, maximum: 2_147_483_647 }),
  Type.String(),
], { description: "milliseconds (an integer from 0 to 2147483647) or a duration such as '500ms' or '2s'" })

const Shadow = Type.Boolean({ description: 'true or false' })

const Scale = Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'a number in (0, 1]' })
// Prometheus metric and label names: [a-zA-Z_:][a-zA-Z0-9_:]*; a prefix may also be empty
const METRIC_PREFIX = '^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$'

export const MetricsSchema = Type.Union([
  Type.Boolean(),
  Type.Object({
    registry: Type.Optional(typed<MetricsRegistry>(Type.Object({}, { description: 'a prom-client Registry' }))),
    prefix: Type.Optional(Type.String({ pattern: METRIC_PREFIX, description: "a metric name prefix: letters, digits, '_' and ':', not starting with a digit" })),
    route: Type.Optional(Type.Union([Type.String({ pattern: '^/', description: "a URL path starting with '/'" }), Type.Literal(false)], {
      description: "a URL path starting with '/', or false",
    })),
  }, { additionalProperties: false }),
], { description: 'true, false or { registry?, prefix?, route? }' })

export const LogRefusalsSchema = Type.Union([
  Type.Boolean(),
  Type.Object({
    perSecond: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'an integer from 1 to 1000000' })),
    level: Type.Optional(Type.Union([Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn')], { description: "'debug', 'info' or 'warn'" })),
  }, { additionalProperties: false }),
], { description: 'true, false or { perSecond?, level? }' })

export const OpenApiSchema = Type.Union([
  Type.Boolean(),
  Type.Object({
    errorResponseSchema: Type.Optional(typed<Record<string, unknown>>(Type.Object({}, { description: 'a JSON schema object' }))),
  }, { additionalProperties: false }),
], { description: 'true, false or { errorResponseSchema? }' })

export const OptionsSchema = Type.Object({
  store: Type.Optional(StoreSchema),
  key: Type.Optional(resolver<NonNullable<FastifyGcraOptions['key']>>()),
  tier: Type.Optional(resolver<NonNullable<FastifyGcraOptions['tier']>>()),
  tiers: Type.Optional(TiersSchema),
  limits: Type.Optional(LimitsSchema),
  global: Type.Optional(LimitsSchema),
  headers: Type.Optional(Type.Union([
    Type.Literal('draft'), Type.Literal('legacy'), Type.Literal('both'), Type.Literal(false),
  ], { description: "'draft', 'legacy', 'both' or false" })),
  prefix: Type.Optional(Type.String({ description: "a string without '{' or '}'" })),
  keySecret: Type.Optional(Type.String({ minLength: 16, description: 'a string of at least 16 characters' })),
  hook: Type.Optional(Type.Union([Type.Literal('onRequest'), Type.Literal('preHandler')], {
    description: "'onRequest' or 'preHandler'",
  })),
  storeTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'an integer from 1 to 2147483647 (milliseconds)' })),
  onStoreError: Type.Optional(OnStoreError),
  delay: Type.Optional(Delay),
  maxDelayed: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'an integer from 0 to 1000000' })),
  shadow: Type.Optional(Shadow),
  errorResponseBuilder: Type.Optional(typed<NonNullable<FastifyGcraOptions['errorResponseBuilder']>>(Type.Function([Type.Any(), Type.Any()], Type.Any(), { description: 'a function (request, context) => body' }))),
  scale: Type.Optional(typed<ScaleFunction>(Type.Function([Type.Any()], Type.Any(), { description: 'a function (request) => number in (0, 1]' }))),
  pressureScale: Type.Optional(Scale),
  concurrencyLeaseMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 86_400_000, description: 'an integer from 1000 to 86400000 (milliseconds)' })),
  metrics: Type.Optional(MetricsSchema),
  logRefusals: Type.Optional(LogRefusalsSchema),
  openapi: Type.Optional(OpenApiSchema),
}, { additionalProperties: false, description: 'an options object' })

export const RouteConfigSchema = Type.Union([
  Type.Literal(false),
  Type.Object({
    limits: Type.Optional(LimitsSchema),
    cost: Type.Optional(typed<CostSetting>(Type.Union([
      // 0 is a free request (an empty batch): admitted, charged nothing
      Type.Number({ minimum: 0 }),
      Type.Function([Type.Any()], Type.Any()),
    ], { description: 'a finite number >= 0 or a function of the request' }))),
    scope: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'a non-empty string of at most 128 characters' })),
    onStoreError: Type.Optional(OnStoreError),
    tiers: Type.Optional(Type.Record(Type.String(), Type.Union([
      LimitsSchema,
      Type.Object({
        limits: Type.Optional(LimitsSchema),
        concurrency: Type.Optional(Slots),
      }, { additionalProperties: false }),
    ], { description: 'an array of limits or { limits?, concurrency? }' }), {
      description: "an object of tier names to arrays of limits or { limits?, concurrency? }, e.g. { premium: ['100/minute'] }",
    })),
    concurrency: Type.Optional(ConcurrencySchema),
    settle: Type.Optional(typed<SettleFunction>(Type.Function([Type.Any(), Type.Any()], Type.Any(), { description: 'a function (request, reply) => the actual cost' }))),
    scale: Type.Optional(typed<ScaleFunction>(Type.Function([Type.Any()], Type.Any(), { description: 'a function (request) => number in (0, 1]' }))),
    delay: Type.Optional(Delay),
    shadow: Type.Optional(Shadow),
  }, { additionalProperties: false }),
], { description: 'false or { limits?, cost?, scope?, tiers?, onStoreError?, concurrency?, settle?, scale?, delay?, shadow? }' })

export const checkOptions = TypeCompiler.Compile(OptionsSchema)
export const checkLimits = TypeCompiler.Compile(LimitsSchema)
export const checkRouteConfig = TypeCompiler.Compile(RouteConfigSchema)

/** `/limits/0/max` as `limits[0].max`, under `root`. */
export function formatPath (root: string, pointer: string): string {
  let out = root
  for (const part of pointer.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~')
    out += /^\d+$/.test(key) ? `[${key}]` : (/^[A-Za-z_$][\w$]*$/.test(key) ? `${out === '' ? '' : '.'}${key}` : `[${JSON.stringify(key)}]`)
  }
  return out === '' ? '(root)' : out
}

// A union error says only "expected union value"; when one branch got further into the
// value (an object with a bad field), its error is the useful one. A branch that misses a
// required key is one the value did not try to be ({ redis } is not { memory }).
function deepest (error: ValueError): ValueError {
  if (error.type !== ValueErrorType.Union) return error
  let best = error
  for (const branch of error.errors as ValueErrorIterator[]) {
    const first = branch.First()
    if (first === undefined || first.type === ValueErrorType.ObjectRequiredProperty) continue
    if (first.path.length > best.path.length) best = deepest(first)
  }
  return best
}

function expectedOf (error: ValueError): string {
  if (error.type === ValueErrorType.ObjectAdditionalProperties) {
    const known = Object.keys((error.schema as TSchema & { properties?: object }).properties ?? {})
    return `one of the known keys (${known.join(', ')})`
  }
  const description = (error.schema as TSchema).description
  if (typeof description === 'string') return description
  return error.message.replace(/^Expected /, '')
}

interface CompiledCheck {
  Check(value: unknown): boolean
  Errors(value: unknown): ValueErrorIterator
}

/** Throw FST_GCRA_INVALID_OPTION for the first failure of a compiled check. */
export function assertValid (check: CompiledCheck, value: unknown, root: string): void {
  if (check.Check(value)) return
  const first = check.Errors(value).First()
  if (first === undefined) throw new FST_GCRA_INVALID_OPTION(root, 'a valid value', describe(value))
  const error = deepest(first)
  const path = formatPath(root, error.path)
  const got = error.type === ValueErrorType.ObjectAdditionalProperties ? `'${error.path.split('/').pop()}'` : describe(error.value)
  throw new FST_GCRA_INVALID_OPTION(path, expectedOf(error), got)
}
