/**
 * The guard around every call to a remote store: bounded by `storeTimeoutMs`, skipped while
 * the circuit breaker of the server (Cluster node) that holds the keys is open, timed by
 * the metrics, and logged once per outage rather than per request.
 */
import type { FastifyBaseLogger } from 'fastify'
import { FST_GCRA_STORE_TIMEOUT, FST_GCRA_STORE_UNAVAILABLE } from '../errors.js'
import type { RateLimitStore } from '../stores/contract.js'
import { isThenable, type MaybePromise } from '../util/maybe.js'
import { Deadlines, withTimeout } from '../util/timeout.js'
import { Breaker, type BreakerState } from './breaker.js'

/** Watches the calls to a remote store (the metrics). */
export interface StoreObserver {
  /** A call was sent; `answer` settles with its reply, or its error or timeout. Returns `answer`. */
  storeCall<T> (answer: Promise<T>): Promise<T>
}

interface Shard {
  readonly name: string
  readonly breaker: Breaker
}

export class StoreGuard {
  readonly #store: RateLimitStore
  readonly #timeoutMs: number
  readonly #log: FastifyBaseLogger
  readonly #breakers = new Map<string, Breaker>()
  readonly #deadlines: Deadlines
  /** Set by the metrics, before the first request. */
  observer: StoreObserver | undefined
  /** Called when a server answers again after an outage (its data may be new). */
  onRecovered: (() => void) | undefined

  constructor (store: RateLimitStore, timeoutMs: number, log: FastifyBaseLogger) {
    this.#store = store
    this.#timeoutMs = timeoutMs
    this.#deadlines = new Deadlines(timeoutMs)
    this.#log = log
  }

  #shardOf (hashTag: string): Shard | undefined {
    const store = this.#store
    if (!store.remote) return undefined
    const name = store.shardOf(hashTag)
    let breaker = this.#breakers.get(name)
    if (breaker === undefined) this.#breakers.set(name, breaker = new Breaker())
    return { name, breaker }
  }

  /**
   * One store call for the keys tagged `hashTag`: `onValue` with its answer, or `onError`
   * with why there is none. A synchronous (memory) answer stays synchronous.
   */
  call<T, R> (hashTag: string, run: () => MaybePromise<T>, onValue: (value: T) => R, onError: (error: unknown) => R): MaybePromise<R> {
    const shard = this.#shardOf(hashTag)
    const turn = shard === undefined ? 'call' : shard.breaker.allow()
    if (turn === false) return onError(new FST_GCRA_STORE_UNAVAILABLE())
    let pending: MaybePromise<T>
    try {
      pending = run()
    } catch (error) {
      this.#failed(error, shard, turn === 'probe')
      return onError(error)
    }
    if (!isThenable(pending)) return onValue(pending)
    const answer = this.#deadlines.race(pending, this.#timedOut)
    return (this.observer === undefined ? answer : this.observer.storeCall(answer)).then(
      (value) => {
        if (shard !== undefined && shard.breaker.success()) this.#recovered(shard)
        return onValue(value)
      },
      (error: unknown) => {
        this.#failed(error, shard, turn === 'probe')
        return onError(error)
      },
    )
  }

  /** A store call nobody waits for (releases, renewals, announcements): bounded, and its failure logged, never unhandled. */
  background (run: () => void | Promise<void>, level: 'warn' | 'debug', message: string): void {
    try {
      const pending = run()
      if (isThenable(pending)) {
        const ms = this.#timeoutMs * 10
        withTimeout(pending, ms, () => { throw new FST_GCRA_STORE_TIMEOUT(ms) }).catch((error: unknown) => { this.#log[level]({ err: error }, message) })
      }
    } catch (error) {
      this.#log[level]({ err: error }, message)
    }
  }

  /** A call whose caller waits, outside the breakers (reset): bounded by the timeout. */
  bounded<T> (pending: MaybePromise<T>): MaybePromise<T> {
    if (!isThenable(pending)) return pending
    return this.#deadlines.race(pending, this.#timedOut)
  }

  readonly #timedOut = (): never => { throw new FST_GCRA_STORE_TIMEOUT(this.#timeoutMs) }

  /** Each breaker's state, by server: '' for one Redis, 'host:port' per Cluster node. */
  states (): Array<[string, BreakerState]> {
    return [...this.#breakers].map(([name, breaker]) => [name, breaker.state])
  }

  #failed (error: unknown, shard: Shard | undefined, probe: boolean): void {
    // logged once when the breaker opens, and once when it closes: not per request
    if (shard !== undefined && shard.breaker.failure(probe)) {
      this.#log.error({ err: error, ...(shard.name === '' ? {} : { node: shard.name }) }, 'fastify-gcra: the store failed; requests follow onStoreError (allow, deny or local) until it answers again')
    } else {
      this.#log.debug({ err: error }, 'fastify-gcra: a store call failed')
    }
  }

  #recovered (shard: Shard): void {
    this.#log.info(shard.name === '' ? {} : { node: shard.name }, 'fastify-gcra: the store answers again; limiting with it resumed')
    this.onRecovered?.()
  }
}
