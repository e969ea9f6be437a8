/**
 * Plugin options and route settings: checked once at registration (the schemas, then the
 * rules a schema cannot say), normalised into frozen objects. Nothing invalid is replaced
 * by a default.
 */
import type { Cluster, Redis } from 'ioredis'
import { FST_GCRA_INVALID_OPTION, describe } from '../errors.js'
import { normaliseLimit, parseDuration, type Limit, type LimitSpec } from '../limits/limit.js'
import { assertValid, checkLimits, checkOptions, checkRouteConfig } from './schemas.js'
import type {
  CostSetting, FastifyGcraOptions, MetricsRegistry, RouteRateLimitConfig, ScaleFunction, SettleFunction, StoreErrorPolicy,
} from './types.js'

export type StoreSetting =
  | { readonly kind: 'memory', readonly maxKeys: number }
  | { readonly kind: 'redis', readonly redis: Redis | Cluster | string }

export interface NormalisedOptions {
  readonly store: StoreSetting
  readonly key: FastifyGcraOptions['key']
  readonly tier: FastifyGcraOptions['tier']
  /** Tier name → multiplier. */
  readonly tiers: ReadonlyMap<string, number>
  readonly limits: readonly Limit[] | undefined
  readonly global: readonly Limit[]
  readonly headers: 'draft' | 'legacy' | 'both' | false
  readonly prefix: string
  readonly keySecret: string | undefined
  readonly hook: 'onRequest' | 'preHandler'
  readonly storeTimeoutMs: number
  readonly onStoreError: StoreErrorPolicy
  /** The default hold of every route, in ms (0: refuse at once). */
  readonly delayMs: number
  readonly maxDelayed: number
  readonly shadow: boolean
  readonly errorResponseBuilder: FastifyGcraOptions['errorResponseBuilder']
  readonly scale: ScaleFunction | undefined
  readonly pressureScale: number | undefined
  readonly concurrencyLeaseMs: number
  /** undefined: metrics off. */
  readonly metrics: { readonly registry: MetricsRegistry | undefined, readonly prefix: string, readonly route: string | false } | undefined
  /** undefined: refusals are not logged. */
  readonly logRefusals: { readonly perSecond: number, readonly level: 'debug' | 'info' | 'warn' } | undefined
  /** undefined: routes are not documented. */
  readonly openapi: { readonly errorResponseSchema: Record<string, unknown> | undefined } | undefined
}

export interface ConcurrencySettings {
  readonly perCaller: number | undefined
  readonly route: number | undefined
  /** Per-caller slots of tiers that set their own. */
  readonly tiers: ReadonlyMap<string, number>
}

export interface RouteSettings {
  readonly limits: readonly Limit[] | undefined
  readonly cost: CostSetting
  readonly scope: string | undefined
  readonly tiers: ReadonlyMap<string, readonly Limit[]>
  readonly onStoreError: StoreErrorPolicy | undefined
  readonly concurrency: ConcurrencySettings | undefined
  readonly settle: SettleFunction | undefined
  readonly scale: ScaleFunction | undefined
  readonly delayMs: number | undefined
  readonly shadow: boolean | undefined
}

export const DEFAULT_MAX_KEYS = 100_000

/** Normalise an array of limit specs whose shape the schema has checked; `path` for errors. */
export function normaliseLimits (specs: readonly LimitSpec[], path: string, namePrefix = ''): Limit[] {
  const out: Limit[] = []
  const names = new Set<string>()
  specs.forEach((spec, i) => {
    const result = normaliseLimit(spec)
    if ('expected' in result) {
      const given = typeof spec === 'string' || result.path === '' ? spec : (spec as unknown as Record<string, unknown>)[result.path.slice(1)]
      throw new FST_GCRA_INVALID_OPTION(`${path}[${i}]${result.path}`, result.expected, describe(given))
    }
    const explicitName = typeof spec === 'object' && spec.name !== undefined
    const limit = explicitName || namePrefix === '' ? result : Object.freeze({ ...result, name: `${namePrefix}${result.name}` })
    if (names.has(limit.name)) {
      throw new FST_GCRA_INVALID_OPTION(`${path}[${i}]`, `limits with distinct names (give one a name)`, `a second limit named '${limit.name}'`)
    }
    names.add(limit.name)
    out.push(limit)
  })
  return out
}

/** A `delay` the schema has checked, in ms: a number as given, a string through `parseDuration`. */
function delayMs (value: number | string | undefined, path: string): number | undefined {
  if (value === undefined || typeof value === 'number') return value
  const ms = parseDuration(value)
  if (ms === undefined || ms > 2_147_483_647) throw new FST_GCRA_INVALID_OPTION(path, "a duration such as '500ms' or '2s' (at most 2147483647 ms)", describe(value))
  return ms
}

/** Check and normalise limits given at run time (the programmatic API); `path` for errors. */
export function checkedLimits (specs: unknown, path: string): Limit[] {
  assertValid(checkLimits, specs, path)
  return normaliseLimits(specs as readonly LimitSpec[], path)
}

export function normaliseOptions (options: unknown): NormalisedOptions {
  const given = options ?? {}
  assertValid(checkOptions, given, 'options')
  const opts = given as FastifyGcraOptions

  let store: StoreSetting
  const storeOpt = opts.store ?? 'memory'
  if (storeOpt === 'memory') {
    store = { kind: 'memory', maxKeys: DEFAULT_MAX_KEYS }
  } else if ('memory' in storeOpt) {
    store = { kind: 'memory', maxKeys: storeOpt.memory.maxKeys ?? DEFAULT_MAX_KEYS }
  } else {
    const redis = storeOpt.redis
    if (typeof redis === 'string') {
      if (!/^rediss?:\/\//.test(redis)) throw new FST_GCRA_INVALID_OPTION('options.store.redis', "a URL 'redis://...' or 'rediss://...'", describe(redis))
    } else if (typeof (redis as { defineCommand?: unknown }).defineCommand !== 'function' || typeof (redis as { del?: unknown }).del !== 'function') {
      throw new FST_GCRA_INVALID_OPTION('options.store.redis', 'an ioredis Redis or Cluster instance', describe(Object.prototype.toString.call(redis)))
    }
    store = { kind: 'redis', redis }
  }

  const tiers = new Map<string, number>()
  for (const [name, value] of Object.entries(opts.tiers ?? {})) {
    tiers.set(name, typeof value === 'number' ? value : value.multiplier)
  }

  const prefix = opts.prefix ?? 'gcra'
  if (/[{}]/.test(prefix)) throw new FST_GCRA_INVALID_OPTION('options.prefix', "a string without '{' or '}' (the plugin places the Cluster hash tag)", describe(prefix))

  const limits = opts.limits === undefined ? undefined : normaliseLimits(opts.limits, 'options.limits')
  const global = normaliseLimits(opts.global ?? [], 'options.global', 'global ')

  let metrics: NormalisedOptions['metrics']
  if (opts.metrics !== undefined && opts.metrics !== false) {
    const m = opts.metrics === true ? {} : opts.metrics
    if (m.registry !== undefined) {
      const missing = (['metrics', 'registerMetric', 'getSingleMetric', 'removeSingleMetric'] as const).filter(f => typeof (m.registry as unknown as Record<string, unknown>)[f] !== 'function')
      if (missing.length > 0) throw new FST_GCRA_INVALID_OPTION('options.metrics.registry', 'a prom-client Registry', `an object without ${missing.join(', ')}()`)
    }
    const route = m.route ?? '/metrics'
    if (route === false && m.registry === undefined) {
      throw new FST_GCRA_INVALID_OPTION('options.metrics.route', 'a URL path, or false together with a registry of yours (else nothing could read the metrics)', 'false without a registry')
    }
    metrics = Object.freeze({ registry: m.registry, prefix: m.prefix ?? 'fastify_gcra_', route })
  }
  const logRefusals = opts.logRefusals === undefined || opts.logRefusals === false
    ? undefined
    : Object.freeze({ perSecond: (opts.logRefusals === true ? undefined : opts.logRefusals.perSecond) ?? 10, level: (opts.logRefusals === true ? undefined : opts.logRefusals.level) ?? 'info' })
  const openapi = opts.openapi === false
    ? undefined
    : Object.freeze({ errorResponseSchema: opts.openapi === undefined || opts.openapi === true ? undefined : opts.openapi.errorResponseSchema })

  return Object.freeze({
    store: Object.freeze(store),
    key: opts.key,
    tier: opts.tier,
    tiers,
    limits: limits === undefined ? undefined : Object.freeze(limits),
    global: Object.freeze(global),
    headers: opts.headers ?? 'draft',
    prefix,
    keySecret: opts.keySecret,
    hook: opts.hook ?? 'onRequest',
    storeTimeoutMs: opts.storeTimeoutMs ?? 100,
    // never silently unlimited: a failing store is replaced by this instance's own limits
    onStoreError: opts.onStoreError ?? 'local',
    delayMs: delayMs(opts.delay, 'options.delay') ?? 0,
    maxDelayed: opts.maxDelayed ?? 1000,
    shadow: opts.shadow ?? false,
    errorResponseBuilder: opts.errorResponseBuilder,
    scale: opts.scale,
    pressureScale: opts.pressureScale,
    concurrencyLeaseMs: opts.concurrencyLeaseMs ?? 60_000,
    metrics,
    logRefusals,
    openapi,
  })
}

/** Normalise a route's `config.rateLimit` (not `false`); `root` names the route for errors. */
export function normaliseRouteConfig (config: unknown, root: string, tiers: ReadonlyMap<string, number>): RouteSettings {
  assertValid(checkRouteConfig, config, root)
  const cfg = config as Exclude<RouteRateLimitConfig, false>
  const routeTiers = new Map<string, readonly Limit[]>()
  const tierSlots = new Map<string, number>()
  for (const [name, setting] of Object.entries(cfg.tiers ?? {})) {
    if (!tiers.has(name)) {
      throw new FST_GCRA_INVALID_OPTION(`${root}.tiers`, `a tier declared in the plugin's tiers (${[...tiers.keys()].join(', ') || 'none declared'})`, describe(name))
    }
    const specs = Array.isArray(setting) ? setting : setting.limits
    if (specs !== undefined) routeTiers.set(name, Object.freeze(normaliseLimits(specs, `${root}.tiers.${name}${Array.isArray(setting) ? '' : '.limits'}`)))
    if (!Array.isArray(setting) && setting.concurrency !== undefined) tierSlots.set(name, setting.concurrency)
  }
  const given = cfg.concurrency
  let concurrency: ConcurrencySettings | undefined
  if (given !== undefined || tierSlots.size > 0) {
    const perCaller = typeof given === 'number' ? given : given?.perCaller
    if (perCaller === undefined && tierSlots.size > 0) {
      throw new FST_GCRA_INVALID_OPTION(`${root}.concurrency`, 'a per-caller concurrency for callers of other tiers (tiers set their own)', describe(given))
    }
    concurrency = Object.freeze({ perCaller, route: typeof given === 'number' ? undefined : given?.route, tiers: tierSlots })
  }
  return Object.freeze({
    limits: cfg.limits === undefined ? undefined : Object.freeze(normaliseLimits(cfg.limits, `${root}.limits`)),
    cost: cfg.cost ?? 1,
    scope: cfg.scope,
    tiers: routeTiers,
    onStoreError: cfg.onStoreError,
    concurrency,
    settle: cfg.settle,
    scale: cfg.scale,
    delayMs: delayMs(cfg.delay, `${root}.delay`),
    shadow: cfg.shadow,
  })
}
