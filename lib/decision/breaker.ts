/**
 * A circuit breaker around the store: after `threshold` consecutive failures the store is
 * not called for a back-off period; then one request probes it. Recovery is automatic.
 * The back-off doubles per failed probe up to `maxBackoffMs`, so a store that comes back
 * is used again within `maxBackoffMs` of the next request.
 */

export interface BreakerOptions {
  /**
   * Consecutive failures that open the breaker.
   * @default 3
   */
  threshold?: number
  /**
   * The first back-off, in ms.
   * @default 100
   */
  backoffMs?: number
  /**
   * The longest back-off, in ms.
   * @default 500
   */
  maxBackoffMs?: number
}

export type BreakerState = 'closed' | 'open' | 'half-open'

export class Breaker {
  #state: BreakerState = 'closed'
  #failures = 0
  #backoffMs: number
  #retryAt = 0
  readonly #threshold: number
  readonly #firstBackoffMs: number
  readonly #maxBackoffMs: number
  readonly #now: () => number

  // monotonic: a wall clock stepped back would keep the breaker open for the step
  constructor (options: BreakerOptions = {}, now: () => number = () => performance.now()) {
    this.#threshold = options.threshold ?? 3
    this.#firstBackoffMs = options.backoffMs ?? 100
    this.#maxBackoffMs = options.maxBackoffMs ?? 500
    this.#backoffMs = this.#firstBackoffMs
    this.#now = now
  }

  get state (): BreakerState {
    return this.#state
  }

  /**
   * Whether this call may go to the store: 'call', 'probe' (the first call after a
   * back-off, the only one whose failure settles the half-open state) or false.
   */
  allow (): 'call' | 'probe' | false {
    if (this.#state === 'closed') return 'call'
    if (this.#state === 'half-open') return false
    if (this.#now() < this.#retryAt) return false
    this.#state = 'half-open'
    return 'probe'
  }

  /** A call succeeded. Returns true when this closes an open breaker. */
  success (): boolean {
    const recovered = this.#state !== 'closed'
    this.#state = 'closed'
    this.#failures = 0
    this.#backoffMs = this.#firstBackoffMs
    return recovered
  }

  /**
   * A call failed. While half-open only the probe's failure counts (calls sent before the
   * breaker opened may still be failing). Returns true when this opens a closed breaker.
   */
  failure (probe = false): boolean {
    if (this.#state === 'half-open') {
      if (probe) {
        this.#backoffMs = Math.min(this.#backoffMs * 2, this.#maxBackoffMs)
        this.#open()
      }
      return false
    }
    if (this.#state === 'closed' && ++this.#failures >= this.#threshold) {
      this.#open()
      return true
    }
    return false
  }

  #open (): void {
    this.#state = 'open'
    this.#retryAt = this.#now() + this.#backoffMs
  }
}
