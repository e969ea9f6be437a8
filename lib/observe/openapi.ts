/**
 * OpenAPI documentation of limited routes: their 429 (and 413, 503 where those can
 * happen) and rate-limit headers, as response schemas that `@fastify/swagger` reads.
 *
 * Fastify compiles a route's response schemas into serializers that drop what a schema
 * does not name. These schemas are documentation only, so they are added when the app
 * is ready, after every serializer was compiled: no response (the plugin's, an
 * `errorResponseBuilder`'s or a handler's own 429) is ever serialized through them.
 * The route's schema object is replaced, never changed: one schema object may serve
 * several routes, some not limited.
 */
import type { RouteOptions } from 'fastify'
import type { RoutePlan } from '../limits/plan.js'
import type { NormalisedOptions } from '../options/normalise.js'
import { exceedsCapacity } from '../limits/policy.js'
import { QUOTA_EXCEEDED, TEMPORARY_REDUCED_CAPACITY } from '../http/problems.js'

type Schema = Record<string, unknown>

const PROBLEM_JSON = 'application/problem+json'

const RATE_LIMIT_HEADERS: Record<string, Schema> = {
  'RateLimit-Policy': {
    type: 'string',
    description: 'IETF draft-10 quota policies, one per limit that applied: "<name>";q=<units per window>;w=<window in seconds>',
  },
  RateLimit: {
    type: 'string',
    description: 'IETF draft-10 remaining quota, one item per policy: "<name>";r=<units left>;t=<seconds until one more unit>',
  },
}

const LEGACY_HEADERS: Record<string, Schema> = {
  'X-RateLimit-Limit': { type: 'integer', description: 'Units per window of the most restrictive policy' },
  'X-RateLimit-Remaining': { type: 'integer', description: 'Units left in the most restrictive policy' },
  'X-RateLimit-Reset': { type: 'integer', description: 'Seconds until the most restrictive policy holds one more unit' },
}

const RETRY_AFTER: Schema = { type: 'integer', minimum: 1, description: 'Seconds to wait before retrying' }

/** The rate-limit header schemas of a `headers` mode. */
export function rateLimitHeaders (mode: NormalisedOptions['headers']): Record<string, Schema> {
  if (mode === false) return {}
  return {
    ...(mode === 'legacy' ? {} : RATE_LIMIT_HEADERS),
    ...(mode === 'draft' ? {} : LEGACY_HEADERS),
  }
}

const problem = (status: number, type: string, extra: Record<string, Schema>, required: string[]): Schema => ({
  type: 'object',
  description: 'RFC 9457 problem details',
  required: ['type', 'title', 'status', 'detail', ...required],
  properties: {
    type: { type: 'string', enum: [type] },
    title: { type: 'string' },
    status: { type: 'integer', enum: [status] },
    detail: { type: 'string' },
    ...extra,
  },
})

export const QUOTA_EXCEEDED_SCHEMA: Schema = problem(429, QUOTA_EXCEEDED, {
  'violated-policies': { type: 'array', items: { type: 'string' }, description: 'The names of the limits that refused the request' },
}, ['violated-policies'])

export const COST_TOO_LARGE_SCHEMA: Schema = problem(413, 'about:blank', {
  'max-cost': { type: 'number', description: "The largest cost the caller's tier admits at once on this route" },
}, ['max-cost'])

export const STORE_UNAVAILABLE_SCHEMA: Schema = problem(503, 'about:blank', {}, [])

export const REDUCED_CAPACITY_SCHEMA: Schema = problem(503, TEMPORARY_REDUCED_CAPACITY, {
  'violated-policies': { type: 'array', items: { type: 'string' }, description: 'At a reduced scale: the limits too small for this request for now (absent when the route is at its concurrency capacity)' },
}, [])

/** Whether a request of this route can get a 413: a cost that no bucket of some tier can ever hold. */
export function canBeTooLarge (plan: RoutePlan): boolean {
  if (typeof plan.cost !== 'number') return true
  for (const set of [plan.base, ...plan.tiers.values()]) {
    if (exceedsCapacity(set, set.fixedIncrements ?? set.unitIncrements)) return true
  }
  return false
}

/** The responses a limited route adds to its documentation, by status code. */
/** Whether the route has rate limits (a route may have only a concurrency limit). */
const rated = (plan: RoutePlan): boolean => plan.base.policies.length > 0

/** The rate-limit fields a route's responses carry: none for a route with only a route-wide concurrency limit. */
export function routeFields (options: NormalisedOptions, plan: RoutePlan): Record<string, Schema> {
  if (rated(plan)) return rateLimitHeaders(options.headers)
  // a caller's concurrency limit has draft-10 items, and no legacy field
  const perCaller = plan.concurrency?.perCaller !== undefined || (plan.concurrency?.tiers.size ?? 0) > 0
  return perCaller && (options.headers === 'draft' || options.headers === 'both') ? RATE_LIMIT_HEADERS : {}
}

export function limitedResponses (options: NormalisedOptions, plan: RoutePlan): Record<string, Schema> {
  const fields = routeFields(options, plan)
  const custom = options.errorResponseBuilder !== undefined
  const customSchema = options.openapi?.errorResponseSchema
  const perCaller = plan.concurrency?.perCaller !== undefined || (plan.concurrency?.tiers.size ?? 0) > 0
  const out: Record<string, Schema> = {}
  if (rated(plan) || perCaller) {
    out[429] = {
      description: !rated(plan)
        ? 'Too Many Requests: the caller has as many requests in flight on this route as it may; retry after Retry-After seconds'
        : plan.concurrency === undefined || !perCaller
          ? 'Too Many Requests: a rate limit of this route is exhausted; retry after Retry-After seconds'
          : 'Too Many Requests: a rate limit of this route is exhausted, or the caller has as many requests in flight as it may; retry after Retry-After seconds',
      headers: { ...fields, 'Retry-After': RETRY_AFTER },
      ...(custom
        ? (customSchema === undefined ? {} : { content: { 'application/json': { schema: customSchema } } })
        : { content: { [PROBLEM_JSON]: { schema: QUOTA_EXCEEDED_SCHEMA } } }),
    }
  }
  if (rated(plan) && canBeTooLarge(plan)) {
    out[413] = {
      description: 'Content Too Large: this request costs more than the caller\'s tier ever admits at once; retrying cannot help',
      headers: fields,
      content: { [PROBLEM_JSON]: { schema: COST_TOO_LARGE_SCHEMA } },
    }
  }
  // the memory store does not fail
  const storeDown = plan.onStoreError === 'deny' && options.store.kind !== 'memory'
  // a route at its concurrency capacity, or admitting less than usual (a scale below 1 applies to rate limits)
  const scaled = rated(plan) && (plan.scale !== undefined || options.scale !== undefined || options.pressureScale !== undefined)
  const reduced = plan.concurrency?.route !== undefined || scaled
  if (storeDown || reduced) {
    const schemas = [...(storeDown ? [STORE_UNAVAILABLE_SCHEMA] : []), ...(reduced ? [REDUCED_CAPACITY_SCHEMA] : [])]
    out[503] = {
      description: [
        ...(storeDown ? ['the rate limiter cannot reach its store'] : []),
        ...(reduced ? ['the route serves as many requests as it can, or admits less than usual for now'] : []),
      ].reduce((text, why, i) => `${text}${i === 0 ? '' : '; or '}${why}`, 'Service Unavailable: '),
      headers: { 'Retry-After': RETRY_AFTER },
      content: { [PROBLEM_JSON]: { schema: schemas.length === 1 ? schemas[0] : { oneOf: schemas } } },
    }
  }
  return out
}

const SUCCESS = /^2(\d\d|xx)$/i

/** A route schema with the limited responses and the rate-limit headers of its success responses. */
export function documented (schema: Schema | undefined, added: Record<string, Schema>, fields: Record<string, Schema>): Schema {
  const declared = schema?.response as Record<string, Schema> | undefined
  const response: Record<string, Schema> = {}
  if (declared === undefined) {
    // what @fastify/swagger shows for a route without response schemas, plus the fields
    // what @fastify/swagger shows for a route without response schemas, plus the fields;
    // `type: 'null'` keeps it from inventing a body schema for it
    response[200] = { 'x-response-description': 'Default Response', type: 'null', ...(Object.keys(fields).length > 0 ? { headers: fields } : {}) }
  } else {
    for (const [status, entry] of Object.entries(declared)) {
      const isObject = typeof entry === 'object' && entry !== null
      response[status] = SUCCESS.test(status) && isObject && Object.keys(fields).length > 0
        ? { ...entry, headers: { ...fields, ...(entry.headers as Schema | undefined) } }
        : entry
    }
  }
  for (const [status, entry] of Object.entries(added)) {
    if (declared === undefined || !(status in declared)) response[status] = entry
  }
  return { ...schema, response }
}

/** Collects the limited routes as they are registered; documents them when the app is ready. */
export class OpenApiDocs {
  readonly #options: NormalisedOptions
  #routes: Array<{ route: RouteOptions, plan: RoutePlan }> = []

  constructor (options: NormalisedOptions) {
    this.#options = options
  }

  add (route: RouteOptions, plan: RoutePlan): void {
    this.#routes.push({ route, plan })
  }

  /** Replace each collected route's schema with its documented copy (the route's options object is what @fastify/swagger reads). */
  apply (): void {
    for (const { route, plan } of this.#routes) {
      route.schema = documented(route.schema as Schema | undefined, limitedResponses(this.#options, plan), routeFields(this.#options, plan))
    }
    this.#routes = []
  }
}
