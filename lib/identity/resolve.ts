/**
 * Who is calling, and in which tier: the `key` and `tier` resolvers (or what an auth hook
 * set on the request, or the client IP), the identity hashed before it becomes a key.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { FST_GCRA_INVALID_KEY, FST_GCRA_INVALID_TIER, describeKind } from '../errors.js'
import type { NormalisedOptions } from '../options/normalise.js'
import { isThenable, type MaybePromise } from '../util/maybe.js'
import { RecentMap } from '../util/bounded.js'
import { Caller } from './caller.js'
import { IDENTITY_CACHE, ipIdentity, plainHasher, rememberedBy } from './hash.js'

// the identity of requests without a client address (a unix socket without trustProxy)
const NO_ADDRESS = 'fastify-gcra:no-client-address'

export class Identity {
  readonly #key: NormalisedOptions['key']
  readonly #tier: NormalisedOptions['tier']
  readonly #log: FastifyBaseLogger
  /**
   * The caller of an identity: its hash (HMAC with `keySecret`) and store keys, remembered
   * for recent identities, whether they come with requests or to the programmatic API.
   */
  readonly callerOf: (identity: string) => Caller
  #warnedNoAddress = false
  /** Recent callers by client address: the /64 grouping is not redone for them. */
  readonly #byAddress = new RecentMap<Caller>(IDENTITY_CACHE)

  constructor (options: NormalisedOptions, log: FastifyBaseLogger) {
    this.#key = options.key
    this.#tier = options.tier
    this.#log = log
    const hash = plainHasher(options.keySecret)
    this.callerOf = rememberedBy(identity => new Caller(hash(identity)))
  }

  /** The caller of a request: its hashed identity and store keys. */
  caller (request: FastifyRequest): MaybePromise<Caller> {
    const resolver = this.#key
    if (resolver === undefined) {
      if (request.rateLimitKey !== null) return this.#callerOfKey(request.rateLimitKey)
      if (typeof request.ip === 'string') return this.#address(request.ip)
      if (!this.#warnedNoAddress) {
        this.#warnedNoAddress = true
        this.#log.warn('fastify-gcra: a request has no client address (a unix socket? set Fastify\'s trustProxy, or a key resolver); such requests share one bucket')
      }
      return this.callerOf(NO_ADDRESS)
    }
    const value = resolver(request)
    return isThenable(value) ? Promise.resolve(value).then(v => this.#callerOfKey(v)) : this.#callerOfKey(value)
  }

  /** The caller's tier name, or null. */
  tier (request: FastifyRequest): MaybePromise<string | null> {
    const resolver = this.#tier
    const value = resolver === undefined ? request.rateLimitTier : resolver(request)
    return isThenable(value) ? Promise.resolve(value).then(tierName) : tierName(value)
  }

  #address (ip: string): Caller {
    let caller = this.#byAddress.get(ip)
    if (caller === undefined) {
      // the addresses of one IPv6 /64 are one caller, remembered once however many of them come
      caller = this.callerOf(ipIdentity(ip))
      // an address from a proxy header may be anything: only address-sized ones are kept
      if (ip.length <= 64) this.#byAddress.set(ip, caller)
    }
    return caller
  }

  /** The caller of what a key resolver returned (or an auth hook set). */
  #callerOfKey (value: unknown): Caller {
    if (typeof value === 'string') return this.callerOf(value)
    if (typeof value === 'number' && Number.isFinite(value)) return this.callerOf(String(value))
    // a repeated header, as Node types it: the same identity as Node's own ', ' join
    if (Array.isArray(value) && value.length > 0 && value.every(v => typeof v === 'string')) return this.callerOf(value.join(', '))
    throw new FST_GCRA_INVALID_KEY(describeKind(value))
  }
}

/** A tier resolver's value as a tier name (null: none); anything else is the server's bug. */
export function tierName (value: unknown): string | null {
  if (value === null || value === undefined) return null
  if (typeof value === 'string') return value
  throw new FST_GCRA_INVALID_TIER(describeKind(value))
}
