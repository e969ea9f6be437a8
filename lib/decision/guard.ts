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
  /** A call sent at `startedMs` (performance.now()) was answered. */
  storeAnswered (startedMs: number): void
  /** A call sent at `startedMs` failed: its error, or its timeout. */
  storeFailed (startedMs: number, error: unknown): void
}

interface Shard {
  readonly name: string
  readonly breaker: Breaker
}

export class StoreGuard {
  readonly #store: RateLimitStore
  readonly #timeoutMs: number
  readonly #log: FastifyBaseLogger
  readonly #shards = new Map<string, Shard>()
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
    let shard = this.#shards.get(name)
    if (shard === undefined) this.#shards.set(name, shard = { name, breaker: new Breaker() })
    return shard
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
    const startedMs = this.observer === undefined ? 0 : performance.now()
    return this.#deadlines.race(pending, this.#timedOut).then(
      (value) => {
        this.#answered(shard, startedMs)
        return onValue(value)
      },
      (error: unknown) => {
        this.#failed(error, shard, turn === 'probe', startedMs)
        return onError(error)
      },
    )
  }

  /**
   * `call` for a store that answers by callback, within the store timeout by itself (the
   * coalesced decisions of `RemoteStore.decideThen`): one promise per call, and no deadline
   * of its own. `send` gets the two callbacks to hand the store.
   */
  ask<T, R> (hashTag: string, send: (resolve: (value: T) => void, reject: (error: unknown) => void) => void, onValue: (value: T) => R, onError: (error: unknown) => R): R | Promise<R> {
    const shard = this.#shardOf(hashTag)
    const turn = shard === undefined ? 'call' : shard.breaker.allow()
    if (turn === false) return onError(new FST_GCRA_STORE_UNAVAILABLE())
    const startedMs = this.observer === undefined ? 0 : performance.now()
    // the callbacks never throw (the store's contract): whatever fails in them rejects the answer
    return new Promise<R>((resolve, reject) => {
      const failed = (error: unknown): void => {
        try {
          this.#failed(error, shard, turn === 'probe', startedMs)
          resolve(onError(error))
        } catch (thrown) {
          reject(thrown)
        }
      }
      try {
        send((value) => {
          try {
            this.#answered(shard, startedMs)
            resolve(onValue(value))
          } catch (thrown) {
            reject(thrown)
          }
        }, failed)
      } catch (error) {
        failed(error)
      }
    })
  }

  /** A local (memory) store threw: logged as any failed call is. */
  localFailed (error: unknown): void {
    this.#failed(error, undefined, false)
  }

  #answered (shard: Shard | undefined, startedMs: number): void {
    this.observer?.storeAnswered(startedMs)
    if (shard !== undefined && shard.breaker.success()) this.#recovered(shard)
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
    return [...this.#shards.values()].map(({ name, breaker }) => [name, breaker.state])
  }

  #failed (error: unknown, shard: Shard | undefined, probe: boolean, startedMs?: number): void {
    if (startedMs !== undefined) this.observer?.storeFailed(startedMs, error)
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
