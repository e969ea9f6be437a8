/**
 * The contract between the limiter and a store, split by role. Internal: the memory store
 * and the Redis script implement one exact math, tested against one reference model, and
 * the contract still changes with the decision path (see the README's "Stores").
 */

/** A store's answer to one decision. */
export interface StoreReply {
  /** Whether every bucket admitted the request. */
  readonly allowed: boolean
  /** The store's clock at the decision, integer µs. */
  readonly nowUs: number
  /** Each bucket's TAT after the decision (integer µs, ≥ now). */
  readonly tatsUs: readonly number[]
}

/** A store's answer to a request for a concurrency slot. */
export interface SlotReply {
  readonly acquired: boolean
  /** Slots held after the call (this one included when acquired). */
  readonly inFlight: number
}

/** GCRA buckets: one TAT per key, decided and settled atomically over a request's keys. */
export interface BucketStore {
  /**
   * Decide one request over its buckets atomically, with the store's own clock. When
   * `charge` is true and every bucket admits, record the new TATs; otherwise write nothing.
   * `capacitiesUs` admit (D plus a route's delay); a stored TAT up to `slackUs` past them is
   * read as it is (held charges of a route with a longer delay), beyond as an empty bucket.
   */
  decide(keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean, slackUs?: number): StoreReply | Promise<StoreReply>
  /**
   * Settle a charge: add `deltasUs[i]` to bucket i's TAT (negative: a refund) from where it
   * stands now, atomically over every bucket. A TAT that falls to now or before is a full
   * bucket and is deleted. Answers `allowed: true` and the TATs after the change (≥ now).
   */
  adjust(keys: readonly string[], capacitiesUs: readonly number[], deltasUs: readonly number[], slackUs?: number): StoreReply | Promise<StoreReply>
  /** Forget these buckets. */
  delete(keys: readonly string[]): void | Promise<void>
}

/** Concurrency slots: a set of tokens per key, each held until released or its lease ends. */
export interface SlotStore {
  /**
   * Take one of `limit` slots of `key` for `token`, held for `leaseMs` unless renewed
   * (a crashed instance's slots expire). Answers whether it was taken and how many are
   * held after the call.
   */
  acquire(key: string, limit: number, token: string, leaseMs: number): SlotReply | Promise<SlotReply>
  /** Extend the leases of slots still held (one token per key). */
  renew(keys: readonly string[], tokens: readonly string[], leaseMs: number): void | Promise<void>
  /** Give a slot back. Releasing a slot that is not held does nothing. */
  release(key: string, token: string): void | Promise<void>
}

/** Refunds heard by every instance sharing a store (their deny caches must forget the caller). */
export interface RefundChannel {
  /** Tell every instance sharing the store that `hashTag`'s buckets got a refund. */
  publishRefund(channel: string, hashTag: string): Promise<void>
  /** Hear refunds from other instances; `onState` says whether they can be heard now. */
  listenRefunds(channel: string, onRefund: (hashTag: string) => void, onState: (listening: boolean) => void, onError: (error: unknown) => void): Promise<void>
}

/** Where a remote store's keys live and when its data may be new. */
export interface StoreTopology {
  /**
   * Which server holds the keys tagged `{hashTag}` (a Cluster node), so that one failing
   * node does not stop callers served by the others. One name for a single server.
   */
  shardOf(hashTag: string): string
  /** Call `listener` whenever the store (re)connects: its data may be new. */
  onReconnect(listener: () => void): void
}

/** The memory store: every role answered in this process, synchronously. */
export interface LocalStore extends BucketStore, SlotStore {
  readonly remote: false
  /**
   * `handles`: a caller's place (see `CallerBuckets`) where the store keeps what it found
   * for these keys, to find it again without a lookup; checked before each use.
   */
  decide(keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean, slackUs?: number, handles?: unknown[]): StoreReply
  adjust(keys: readonly string[], capacitiesUs: readonly number[], deltasUs: readonly number[], slackUs?: number): StoreReply
  acquire(key: string, limit: number, token: string, leaseMs: number): SlotReply
  /** Buckets held now; live buckets evicted because the store was full; slots held. */
  readonly size: number
  readonly evictedLive: number
  readonly slotsHeld: number
  close(): void
}

/** A shared store (Redis, Redis Cluster): every call may fail or be late. */
export interface RemoteStore extends BucketStore, SlotStore, RefundChannel, StoreTopology {
  readonly remote: true
  /**
   * `decide`, answered through `resolve` or `reject` exactly once and at the latest the
   * store timeout after the call (the store bounds its own waits): the request path needs
   * no promise and no deadline of its own per decision. Neither callback may throw.
   */
  decideThen(keys: readonly string[], capacitiesUs: readonly number[], incrementsUs: readonly number[], charge: boolean, slackUs: number, resolve: (reply: StoreReply) => void, reject: (error: unknown) => void): void
  close(): Promise<void>
}

export type RateLimitStore = LocalStore | RemoteStore
