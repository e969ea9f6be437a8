/** The contract between the limiter and a store of bucket state. */

/** A store's answer to one decision. */
export interface StoreReply {
  /** Whether every bucket admitted the request. */
  readonly allowed: boolean
  /** The store's clock at the decision, integer µs. */
  readonly nowUs: number
  /** Each bucket's TAT after the decision (integer µs, ≥ now). */
  readonly tatsUs: readonly number[]
}

export interface RateLimitStore {
  /**
   * Decide one request over its buckets atomically, with the store's own clock. When
   * `charge` is true and every bucket admits, record the new TATs; otherwise write nothing.
   */
  decide(keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean): StoreReply | Promise<StoreReply>
  /**
   * Which server holds the keys tagged `{hashTag}` (a Cluster node), so that one failing
   * node does not stop callers served by the others. One name for a single server.
   */
  shardOf?(hashTag: string): string
  /** Call `listener` whenever the store (re)connects: its data may be new. */
  onReconnect?(listener: () => void): void
  /** Forget these buckets. */
  delete(keys: readonly string[]): void | Promise<void>
  /** Release what the store owns (timers, connections it opened). */
  close(): void | Promise<void>
}
