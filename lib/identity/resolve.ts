/**
 * Who is calling, and in which tier: the `key` and `tier` resolvers (or what an auth hook
 * set on the request, or the client IP), the identity hashed before it becomes a key.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { FST_GCRA_INVALID_KEY, FST_GCRA_INVALID_TIER, describeKind } from '../errors.js'
import type { NormalisedOptions } from '../options/normalise.js'
import { isThenable, type MaybePromise } from '../util/maybe.js'
import { boundedMap } from '../util/bounded.js'
import { Caller } from './caller.js'
import { IDENTITY_CACHE, identityHasher, ipIdentity, plainHasher } from './hash.js'

// the identity of requests without a client address (a unix socket without trustProxy)
const NO_ADDRESS = 'fastify-gcra:no-client-address'

export class Identity {
  readonly #key: NormalisedOptions['key']
  readonly #tier: NormalisedOptions['tier']
  readonly #log: FastifyBaseLogger
  /** The hash of an identity (HMAC with `keySecret`), remembered for recent identities: the programmatic API's. */
  readonly hash: (identity: string) => string
  /** The same hash, remembering nothing: the requests' callers below are what is remembered. */
  readonly #hashOf: (identity: string) => string
  #warnedNoAddress = false
  /** Recent callers by identity (what a resolver returned, or an auth hook set). */
  readonly #byIdentity = boundedMap<Caller>(IDENTITY_CACHE)
  /** Recent callers by client address: the /64 grouping is not redone for them. */
  readonly #byAddress = boundedMap<Caller>(IDENTITY_CACHE)
  #noAddress: Caller | undefined

  constructor (options: NormalisedOptions, log: FastifyBaseLogger) {
    this.#key = options.key
    this.#tier = options.tier
    this.#log = log
    this.hash = identityHasher(options.keySecret)
    this.#hashOf = plainHasher(options.keySecret)
  }

  /** The caller of a request: its hashed identity and store keys. */
  caller (request: FastifyRequest): MaybePromise<Caller> {
    const resolver = this.#key
    if (resolver === undefined) {
      if (request.rateLimitKey !== null) return this.#callerOf(request.rateLimitKey)
      if (typeof request.ip === 'string') return this.#address(request.ip)
      if (!this.#warnedNoAddress) {
        this.#warnedNoAddress = true
        this.#log.warn('fastify-gcra: a request has no client address (a unix socket? set Fastify\'s trustProxy, or a key resolver); such requests share one bucket')
      }
      return this.#noAddress ??= new Caller(this.#hashOf(NO_ADDRESS))
    }
    const value = resolver(request)
    return isThenable(value) ? Promise.resolve(value).then(v => this.#callerOf(v)) : this.#callerOf(value)
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
      caller = this.#remembered(ipIdentity(ip))
      // an address from a proxy header may be anything: only address-sized ones are kept
      if (ip.length <= 64) this.#byAddress.set(ip, caller)
    }
    return caller
  }

  /** The caller of what a key resolver returned (or an auth hook set). */
  #callerOf (value: unknown): Caller {
    if (typeof value === 'string') return this.#remembered(value)
    if (typeof value === 'number' && Number.isFinite(value)) return this.#remembered(String(value))
    // a repeated header, as Node types it: the same identity as Node's own ', ' join
    if (Array.isArray(value) && value.length > 0 && value.every(v => typeof v === 'string')) return this.#remembered(value.join(', '))
    throw new FST_GCRA_INVALID_KEY(describeKind(value))
  }

  #remembered (identity: string): Caller {
    let caller = this.#byIdentity.get(identity)
    if (caller === undefined) {
      caller = new Caller(this.#hashOf(identity))
      // identities longer than a key's worth are not kept: the cache must not hold megabytes
      if (identity.length <= 256) this.#byIdentity.set(identity, caller)
    }
    return caller
  }
}

/** A tier resolver's value as a tier name (null: none); anything else is the server's bug. */
export function tierName (value: unknown): string | null {
  if (value === null || value === undefined) return null
  if (typeof value === 'string') return value
  throw new FST_GCRA_INVALID_TIER(describeKind(value))
}
