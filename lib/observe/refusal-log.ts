/**
 * Refused requests in the request logger, at a bounded rate: a flood of 429s must not
 * become a flood of log lines. Lines past the bound are counted, and the next line
 * logged says how many were left out.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { RequestState } from '../http/state.js'
import { kState } from '../symbols.js'
import type { NormalisedOptions } from '../options/normalise.js'
import type { Observation, ObservationSink } from './outcome.js'

type Settings = NonNullable<NormalisedOptions['logRefusals']>

const REFUSALS = new Set(['refused', 'refused_locally', 'too_large', 'store_unavailable', 'concurrency_refused', 'reduced_capacity'])

export class RefusalLog {
  readonly #perSecond: number
  readonly #level: Settings['level']
  readonly #now: () => number
  #windowEndMs = 0
  #logged = 0
  #suppressed = 0

  /** `now` in ms, replaceable for tests. */
  constructor (settings: Settings, now: () => number = Date.now) {
    this.#perSecond = settings.perSecond
    this.#level = settings.level
    this.#now = now
  }

  /** Refusals not logged since the last line. */
  get suppressed (): number {
    return this.#suppressed
  }

  readonly sink: ObservationSink = (request: FastifyRequest, reply: FastifyReply, seen: Observation): void => {
    if (!REFUSALS.has(seen.outcome)) return
    const now = this.#now()
    if (now >= this.#windowEndMs) {
      this.#windowEndMs = now + 1000
      this.#logged = 0
    }
    if (this.#logged >= this.#perSecond) {
      this.#suppressed++
      return
    }
    this.#logged++
    const info = request.rateLimit
    const state = (request as FastifyRequest & { [kState]?: RequestState | null })[kState]
    const fields: Record<string, unknown> = {
      rateLimit: {
        outcome: seen.outcome,
        ...(seen.shadow ? { shadow: true } : {}),
        route: seen.route,
        tier: seen.tier,
        statusCode: reply.statusCode,
        // a prefix of the identity's hash (HMAC with keySecret): enough to tell callers apart
        caller: state?.key.slice(0, 16),
        ...(info === null
          ? {}
          : seen.outcome === 'too_large'
            ? { cost: info.cost, maxCost: info.maxCost }
            : { cost: info.cost, retryAfterMs: info.retryAfterMs, policies: info.policies.filter(p => p.retryAfterMs > 0).map(p => p.name) }),
      },
    }
    if (this.#suppressed > 0) {
      fields.suppressed = this.#suppressed
      this.#suppressed = 0
    }
    request.log[this.#level](fields, seen.shadow
      ? `fastify-gcra: request would be refused (${seen.outcome}), served in shadow mode`
      : `fastify-gcra: request refused (${seen.outcome})`)
  }
}
