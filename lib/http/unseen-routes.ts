/**
 * Routes the plugin cannot see. Fastify runs an `onRoute` hook only for the routes
 * declared after it was added, in its context and the contexts registered later inside
 * it; a route with `config.rateLimit` declared before `await app.register(gcra)`, after a
 * `register` that was not awaited (the route is added at once, the plugin on a later
 * tick), or in a context the plugin does not reach would never be limited. Fastify keeps
 * its route table (with each route's config) in closures, so a census is taken from the
 * moment each instance is created: Fastify publishes it on the documented
 * `fastify.initialization` diagnostics channel, and a root `onRoute` hook added there
 * sees every route of every context. At `ready()` each plugin instance compares.
 */
import { subscribe } from 'node:diagnostics_channel'
import type { FastifyInstance, RouteOptions } from 'fastify'
import { FST_GCRA_UNSEEN_ROUTE } from '../errors.js'
import { routeLabel } from './route.js'

/**
 * Every route of one app, as declared (the URL is kept: Fastify rewrites `route.url` of
 * a prefixed '/' route afterwards), and the routes some plugin instance saw. Reached from
 * any context (contexts inherit the root's properties). Shared by every copy of this
 * module (test runners evaluate it once per file; an app may load two copies): keep its shape.
 */
interface RouteCensus {
  readonly routes: Array<{ readonly route: RouteOptions, readonly url: string }>
  readonly seen: WeakSet<object>
}

const kCensus = Symbol.for('fastify-gcra.route-census')
const kSubscribed = Symbol.for('fastify-gcra.route-census.subscribed')

type Holder = Record<symbol, RouteCensus | undefined>

function takeCensus (message: unknown): void {
  const fastify = (message as { fastify?: FastifyInstance } | null)?.fastify
  if (fastify === undefined || Object.hasOwn(fastify, kCensus)) return
  const census: RouteCensus = { routes: [], seen: new WeakSet() }
  ;(fastify as unknown as Holder)[kCensus] = census
  // only references: a route's config is read at ready, after every onRoute hook ran
  fastify.addHook('onRoute', (route) => { census.routes.push({ route, url: route.url }) })
}

const processState = globalThis as unknown as Record<symbol, boolean | undefined>
if (processState[kSubscribed] !== true) {
  processState[kSubscribed] = true
  subscribe('fastify.initialization', takeCensus)
}

function declaresLimits (route: RouteOptions): boolean {
  const config = (route.config as { rateLimit?: unknown } | undefined)?.rateLimit
  // false is an exemption; anything else (even an invalid value) is an intent to limit
  return config !== undefined && config !== false
}

function isGet (route: RouteOptions): boolean {
  return Array.isArray(route.method) ? route.method.includes('GET') : route.method === 'GET'
}

let uncheckedWarned = false

/** What one plugin instance saw, checked against the app's census at `ready()`. */
export class UnseenRoutes {
  readonly #census: RouteCensus | undefined

  constructor (fastify: FastifyInstance) {
    this.#census = (fastify as unknown as Holder)[kCensus]
  }

  /** A route this plugin instance's onRoute hook saw (planned, or exempt). */
  saw (route: RouteOptions): void {
    this.#census?.seen.add(route)
  }

  /** Labels of the routes with `config.rateLimit` that no plugin instance saw, in declaration order. */
  unseen (): string[] {
    const census = this.#census
    if (census === undefined) return []
    const missed = census.routes.filter(({ route }) => !census.seen.has(route) && declaresLimits(route))
    // the HEAD route Fastify adds for a GET route (same handler) is named through its GET
    const named = missed.filter(({ route, url }) => route.method !== 'HEAD' || !missed.some(
      (get) => isGet(get.route) && get.route.handler === route.handler && (get.url === url || `${get.url}/` === url)))
    return named.map(({ route, url }) => routeLabel(route, url))
  }

  /** At ready: fail with FST_GCRA_UNSEEN_ROUTE naming every such route; warn if there is no census. */
  check (): void {
    if (this.#census === undefined) {
      warnUnchecked()
      return
    }
    const labels = this.unseen()
    if (labels.length > 0) throw new FST_GCRA_UNSEEN_ROUTE(labels.join(', '))
  }
}

function warnUnchecked (): void {
  if (uncheckedWarned) return
  uncheckedWarned = true
  process.emitWarning(
    'fastify-gcra was first imported after this Fastify instance was created, so it cannot check that every route with ' +
      'config.rateLimit is one it limits (a route declared before the plugin, or in a context it does not reach, would not be). ' +
      "Import it before creating the app: import 'fastify-gcra' at the top of the entry file.",
    { type: 'FastifyGcraWarning', code: 'FST_GCRA_ROUTES_UNCHECKED' },
  )
}
