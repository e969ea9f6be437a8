/**
 * Prometheus metrics (opt-in, with the optional peer dependency prom-client): requests by
 * route, tier and outcome, cost charged, store latency and errors, breakers, deny-cache
 * hits and the memory store's size. A request only bumps numbers in this module's own
 * tables; prom-client reads them when the registry is scraped.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type * as PromClient from 'prom-client'
import { FST_GCRA_INVALID_OPTION, FST_GCRA_NO_PROM_CLIENT } from '../errors.js'
import type { StoreObserver } from '../decision/guard.js'
import type { Engine } from '../engine.js'
import type { NormalisedOptions } from '../options/normalise.js'
import type { MetricsRegistry } from '../options/types.js'
import { OUTCOMES, type Observation, type ObservationSink, type RequestOutcome } from './outcome.js'
import type { RateLimiterStats } from '../types.js'

type Prom = typeof PromClient
type Settings = NonNullable<NormalisedOptions['metrics']>

/** Seconds; a store call rarely takes more than `storeTimeoutMs` (default 100 ms), which ends it. */
export const STORE_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** Seconds a request is held (`delay`): from a few ms to the longest delays that keep a client waiting. */
export const DELAY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** prom-client, loaded only when metrics are on; `importer` is replaceable for tests. */
export async function loadPromClient (importer: () => Promise<unknown> = () => import('prom-client')): Promise<Prom> {
  let mod: unknown
  try {
    mod = await importer()
  } catch (error) {
    throw new FST_GCRA_NO_PROM_CLIENT((error as Error | undefined)?.message ?? String(error), { cause: error })
  }
  // an ES module namespace of the CommonJS package has the classes by name, and as default
  const lib = typeof (mod as Partial<Prom>).Registry === 'function' ? mod : (mod as { default?: unknown }).default
  if (typeof (lib as Partial<Prom> | undefined)?.Registry !== 'function') throw new FST_GCRA_NO_PROM_CLIENT('it has no Registry: prom-client 15 is expected')
  return lib as Prom
}

const OUTCOME_INDEX = Object.fromEntries(OUTCOMES.map((o, i) => [o, i])) as Record<RequestOutcome, number>

/** Totals of one route and tier: what was counted, and what prom-client has been told. */
class Tally {
  readonly requests = new Float64Array(OUTCOMES.length)
  readonly reportedRequests = new Float64Array(OUTCOMES.length)
  /** Requests decided in shadow mode (served whatever the outcome). */
  readonly shadow = new Float64Array(OUTCOMES.length)
  readonly reportedShadow = new Float64Array(OUTCOMES.length)
  cost = 0
  reportedCost = 0
}

/** The kind of a store error, a bounded label. */
function errorKind (error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code
  if (code === 'FST_GCRA_STORE_TIMEOUT') return 'timeout'
  if (code === 'FST_GCRA_STORE_REPLY') return 'reply'
  return 'error'
}

export class Metrics {
  readonly registry: MetricsRegistry
  /** route label → tier label → totals */
  readonly #tallies = new Map<string, Map<string, Tally>>()
  readonly #names: string[] = []
  readonly #storeDuration: PromClient.Histogram
  readonly #storeErrors: PromClient.Counter<'kind'>
  /** Until closed: the holds outlive a registry left by `close`. */
  #open = true

  constructor (prom: Prom, settings: Settings, engine: Engine, stats: () => RateLimiterStats) {
    const registry = (settings.registry ?? new prom.Registry()) as PromClient.Registry
    this.registry = registry as unknown as MetricsRegistry
    const p = settings.prefix
    const registers = [registry]
    const tallies = this.#tallies
    const named = <M>(name: string, make: () => M): M => {
      if (registry.getSingleMetric(name) !== undefined) {
        throw new FST_GCRA_INVALID_OPTION('options.metrics', `a registry without a metric named '${name}' (give each plugin instance on one registry its own prefix)`, 'a registry that has one')
      }
      const metric = make()
      this.#names.push(name)
      return metric
    }

    try {
      /** A counter of requests by route, tier and outcome, fed from one pair of a tally's tables when scraped. */
      const byOutcome = (name: string, help: string, counts: (t: Tally) => Float64Array, reported: (t: Tally) => Float64Array): void => {
        named(name, () => new prom.Counter({
          name,
          help,
          labelNames: ['route', 'tier', 'outcome'] as const,
          registers,
          collect () {
            for (const [route, byTier] of tallies) {
              for (const [tier, t] of byTier) {
                const now = counts(t)
                const told = reported(t)
                for (let i = 0; i < OUTCOMES.length; i++) {
                  const delta = now[i]! - told[i]!
                  if (delta === 0) continue
                  this.inc({ route, tier, outcome: OUTCOMES[i]! }, delta)
                  told[i] = now[i]!
                }
              }
            }
          },
        }))
      }
      byOutcome(`${p}requests_total`, `Requests on limited routes the limiter decided, by route, tier and outcome (${OUTCOMES.join(', ')})`, t => t.requests, t => t.reportedRequests)
      byOutcome(`${p}shadow_requests_total`, 'Requests on routes in shadow mode, by route, tier and the outcome enforcement would have given; every one was served', t => t.shadow, t => t.reportedShadow)
      named(`${p}delayed_requests`, () => new prom.Gauge({
        name: `${p}delayed_requests`,
        help: 'Requests held now until their slot (delay), on this instance',
        registers,
        collect () { this.set(engine.holds.held) },
      }))
      const delaySeconds = named(`${p}delay_seconds`, () => new prom.Histogram({
        name: `${p}delay_seconds`,
        help: 'Time requests were held until their slot (delay); gone: the client left first and its charge was refunded',
        labelNames: ['gone'] as const,
        buckets: DELAY_BUCKETS,
        registers,
      }))
      engine.holds.observe({ held: (ms, gone) => { if (this.#open) delaySeconds.observe({ gone: gone ? 'true' : 'false' }, ms / 1000) } })
      named(`${p}cost_charged_total`, () => new prom.Counter({
        name: `${p}cost_charged_total`,
        help: 'Units charged to admitted requests, by route and tier',
        labelNames: ['route', 'tier'] as const,
        registers,
        collect () {
          for (const [route, byTier] of tallies) {
            for (const [tier, t] of byTier) {
              const delta = t.cost - t.reportedCost
              if (delta === 0) continue
              this.inc({ route, tier }, delta)
              t.reportedCost = t.cost
            }
          }
        },
      }))
      this.#storeDuration = named(`${p}store_duration_seconds`, () => new prom.Histogram({
        name: `${p}store_duration_seconds`,
        help: 'Time from a call to the Redis store to its answer, error or timeout (the memory store is not timed)',
        buckets: STORE_DURATION_BUCKETS,
        registers,
      }))
      this.#storeErrors = named(`${p}store_errors_total`, () => new prom.Counter({
        name: `${p}store_errors_total`,
        help: 'Calls to the Redis store that failed, by kind (timeout, reply, error)',
        labelNames: ['kind'] as const,
        registers,
      }))
      named(`${p}breaker_open`, () => new prom.Gauge({
        name: `${p}breaker_open`,
        help: "1 while a store server's circuit breaker is open or probing, else 0; node: 'redis' for one Redis, host:port per Cluster node",
        labelNames: ['node'] as const,
        registers,
        collect () {
          this.reset()
          for (const [shard, state] of engine.decider.guard.states()) this.set({ node: shard === '' ? 'redis' : shard }, state === 'closed' ? 0 : 1)
        },
      }))
      /** A counter that follows a running total of the limiter's, read when scraped. */
      const following = (name: string, help: string, read: () => number): void => {
        let reported = 0
        named(name, () => new prom.Counter({
          name,
          help,
          registers,
          collect () {
            const total = read()
            if (total > reported) this.inc(total - reported)
            reported = total
          },
        }))
      }
      following(`${p}deny_cache_hits_total`, 'Requests refused from the local deny cache, without a store call', () => stats().denyCacheHits)
      if (!engine.store.remote) {
        named(`${p}memory_store_keys`, () => new prom.Gauge({
          name: `${p}memory_store_keys`,
          help: 'Buckets held by the memory store',
          registers,
          collect () { this.set(stats().storeKeys ?? 0) },
        }))
        following(`${p}memory_store_evicted_live_total`, 'Live buckets the full memory store evicted (each lost a caller\'s state)', () => stats().evictedLive ?? 0)
      }
    } catch (error) {
      // leave a registry of the user's as it was
      this.close()
      throw error
    }
  }

  /** Counts one decided request. */
  readonly sink: ObservationSink = (request: FastifyRequest, _reply: FastifyReply, seen: Observation): void => {
    let byTier = this.#tallies.get(seen.route)
    if (byTier === undefined) this.#tallies.set(seen.route, byTier = new Map())
    let tally = byTier.get(seen.tier)
    if (tally === undefined) byTier.set(seen.tier, tally = new Tally())
    if (seen.shadow) tally.shadow[OUTCOME_INDEX[seen.outcome]]!++
    else tally.requests[OUTCOME_INDEX[seen.outcome]]!++
    // a route with only a concurrency limit charges no cost
    if (seen.outcome === 'admitted' || seen.outcome === 'admitted_locally' || seen.outcome === 'delayed') tally.cost += request.rateLimit?.cost ?? 0
  }

  /** Times the calls to a remote store and counts their errors. */
  readonly observer: StoreObserver = {
    storeAnswered: (startedMs: number): void => {
      this.#storeDuration.observe((performance.now() - startedMs) / 1000)
    },
    storeFailed: (startedMs: number, error: unknown): void => {
      this.#storeDuration.observe((performance.now() - startedMs) / 1000)
      this.#storeErrors.inc({ kind: errorKind(error) })
    },
  }

  /** The handler of the metrics route. */
  async serve (_request: FastifyRequest, reply: FastifyReply): Promise<string> {
    const text = await this.registry.metrics()
    reply.header('content-type', this.registry.contentType)
    return text
  }

  /** Leave the registry (a registry of the user's outlives the app). */
  close (): void {
    this.#open = false
    for (const name of this.#names) this.registry.removeSingleMetric(name)
  }
}
