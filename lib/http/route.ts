/**
 * A route as the plugin sees it in `onRoute`: its label and scope, its plan built from
 * `config.rateLimit` (or the plugin's defaults), and the hooks appended to it.
 */
import type { RouteOptions } from 'fastify'
import type { Engine } from '../engine.js'
import type { RoutePlan } from '../limits/plan.js'
import { namedScope, routeScope } from '../limits/policy.js'
import { normaliseRouteConfig } from '../options/normalise.js'
import type { RouteHooks } from './hooks.js'

/** Where a route is: URL plus constraints (routes may differ only by host or version). */
function routePlace (route: RouteOptions, url: string = route.url): string {
  const constraints = route.constraints === undefined || Object.keys(route.constraints).length === 0 ? '' : ` ${JSON.stringify(route.constraints)}`
  return `${url}${constraints}`
}

/** How errors name a route: its methods and place (`GET,POST /x`); `url` as declared. */
export function routeLabel (route: RouteOptions, url: string = route.url): string {
  return `${methodsOf(route).join(',')} ${routePlace(route, url)}`
}

function methodsOf (route: RouteOptions): readonly string[] {
  return Array.isArray(route.method) ? route.method : [route.method]
}

/** Plans the routes of one plugin instance. */
export class RoutePlanner {
  readonly #engine: Engine
  // The HEAD route Fastify adds for a GET route is a copy of its options, handler included;
  // it shares the GET route's buckets. handler → place → scope id of the GET route.
  readonly #getScopes = new WeakMap<object, Map<string, string>>()

  constructor (engine: Engine) {
    this.#engine = engine
  }

  /** The plan of a route, or undefined when it is not limited (exempt, or nothing applies). */
  plan (route: RouteOptions): RoutePlan | undefined {
    const { options, planner } = this.#engine
    const config = (route.config as { rateLimit?: unknown } | undefined)?.rateLimit
    if (config === false) return undefined
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const place = routePlace(route)
    const label = `${methods.join(',')} ${place}`
    const where = `route ${label}: config.rateLimit`
    const settings = config === undefined ? undefined : normaliseRouteConfig(config, where, options.tiers)
    const limits = settings?.limits ?? options.limits ?? []
    // no config and nothing app-wide: the route is simply not limited
    if (settings === undefined && limits.length === 0 && options.global.length === 0) return undefined
    const plan = planner.route({
      label,
      scopeId: settings?.scope !== undefined ? namedScope(settings.scope) : this.#ownScope(route, methods, place, label),
      limits,
      tierLimits: settings?.tiers,
      cost: settings?.cost,
      withGlobal: true,
      where,
      onStoreError: settings?.onStoreError ?? options.onStoreError,
      concurrency: settings?.concurrency,
      settle: settings?.settle,
      scale: settings?.scale,
      delayMs: settings?.delayMs ?? options.delayMs,
      shadow: settings?.shadow ?? options.shadow,
    })
    // its held charges may take buckets it shares past their capacity: every decision must see them
    this.#engine.decider.reach(plan.delayUs)
    return plan
  }

  #ownScope (route: RouteOptions, methods: readonly string[], place: string, label: string): string {
    const fromGet = methods.length === 1 && methods[0] === 'HEAD' ? this.#getScopes.get(route.handler)?.get(place) : undefined
    const scopeId = fromGet ?? routeScope(label)
    if (methods.includes('GET')) {
      const places = this.#getScopes.get(route.handler) ?? new Map<string, string>()
      places.set(place, scopeId)
      this.#getScopes.set(route.handler, places)
    }
    return scopeId
  }
}

function appended<H> (existing: H | H[] | undefined, hook: H): H[] {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}

/** Append a route's limiting hooks after its own (they run in registration order). */
export function attachHooks (route: RouteOptions, hooks: RouteHooks): void {
  if (hooks.onRequest !== undefined) route.onRequest = appended(route.onRequest as RouteHooks['onRequest'], hooks.onRequest) as RouteOptions['onRequest']
  if (hooks.preHandler !== undefined) route.preHandler = appended(route.preHandler, hooks.preHandler) as RouteOptions['preHandler']
  if (hooks.onResponse !== undefined) route.onResponse = appended(route.onResponse, hooks.onResponse) as RouteOptions['onResponse']
}
