/**
 * Scales of admitted rates in (0, 1]: set for the app or a route (`rateLimiter.setScale`),
 * computed per request (`scale` options), and `pressureScale` while @fastify/under-pressure
 * says so. A request's scale is the product, in hundredths.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { FST_GCRA_INVALID_OPTION, FST_GCRA_INVALID_SCALE, describeKind } from '../errors.js'
import type { NormalisedOptions } from '../options/normalise.js'
import { firstTime } from '../util/bounded.js'
import type { Planner, RoutePlan } from './plan.js'

export class Scales {
  readonly #opts: NormalisedOptions
  readonly #planner: Planner
  readonly #log: FastifyBaseLogger
  /** Scale set by `setScale`: for every route, and per route or scope id. */
  #app = 1
  readonly #scopes = new Map<string, number>()
  readonly #firstInvalid = firstTime()
  /** Under-pressure's check, once the plugin found it (and `pressureScale` is set). */
  #underPressure: (() => boolean) | undefined

  constructor (options: NormalisedOptions, planner: Planner, log: FastifyBaseLogger) {
    this.#opts = options
    this.#planner = planner
    this.#log = log
  }

  /** Whether any scale can apply to this plan's requests (else `of` is always 100). */
  applies (plan: RoutePlan): boolean {
    return this.#app !== 1 || this.#scopes.size > 0 || this.#opts.scale !== undefined || plan.scale !== undefined || this.#underPressure !== undefined
  }

  /** The scale of a request's admitted rates, in hundredths (100: unscaled). */
  of (plan: RoutePlan, request: FastifyRequest): number {
    let factor = this.#app
    if (this.#scopes.size > 0) factor *= this.#scopes.get(plan.scopeId) ?? 1
    const opts = this.#opts
    if (opts.scale !== undefined) factor *= this.#checked(opts.scale(request), 'options.scale')
    if (plan.scale !== undefined) factor *= this.#checked(plan.scale(request), `the scale of ${plan.label}`)
    if (this.#underPressure !== undefined && this.#underPressure()) factor *= opts.pressureScale!
    if (factor >= 1) return 100
    return Math.max(1, Math.round(factor * 100))
  }

  /** Apply `pressureScale` while `check` (under-pressure's `isUnderPressure`) says so. */
  usePressure (check: () => boolean): void {
    this.#underPressure = check
  }

  /** `rateLimiter.setScale`. */
  set (factor: number, target?: string): void {
    if (typeof factor !== 'number' || !(factor > 0 && factor <= 1)) throw new FST_GCRA_INVALID_OPTION('rateLimiter.setScale(factor)', 'a number in (0, 1]', describeKind(factor))
    if (target === undefined) {
      this.#app = factor
      return
    }
    const scopeId = this.#target(target, 'rateLimiter.setScale(factor, target)')
    if (factor === 1) this.#scopes.delete(scopeId)
    else this.#scopes.set(scopeId, factor)
  }

  /** `rateLimiter.getScale`. */
  get (target?: string): number {
    if (target === undefined) return this.#app
    return this.#scopes.get(this.#target(target, 'rateLimiter.getScale(target)')) ?? 1
  }

  /** The scope id a target names (a route label or a scope name); throws for anything else. */
  #target (target: unknown, where: string): string {
    const scopeId = typeof target === 'string' ? this.#planner.target(target) : undefined
    if (scopeId === undefined) throw new FST_GCRA_INVALID_OPTION(where, 'a limited route (\'POST /predict\') or a scope name', typeof target === 'string' ? `'${target.slice(0, 64)}'` : describeKind(target))
    return scopeId
  }

  #checked (value: unknown, what: string): number {
    if (typeof value !== 'number' || Number.isNaN(value)) throw new FST_GCRA_INVALID_SCALE(what, describeKind(value))
    if (value > 0 && value <= 1) return value
    // out of range: kept in (0, 1], with one warning per source
    if (this.#firstInvalid(what)) this.#log.warn({ scale: value }, `fastify-gcra: ${what} returned a scale outside (0, 1]; using ${value > 1 ? 1 : 0.01}`)
    return value > 1 ? 1 : 0.01
  }
}
