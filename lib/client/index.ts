/**
 * `fastify-gcra/client`: a small fetch client that reads rate-limit fields, waits out a
 * 429 (or a 503 with Retry-After) before retrying, and can pace itself so that a known
 * policy is never exceeded.
 */
import { readRateLimit, type RateLimitView } from './fields.js'

export { parseRetryAfter, readRateLimit, type HeadersLike, type PolicyView, type RateLimitView } from './fields.js'
export { parseList, Token, type BareItem, type ListItem } from './structured.js'

export interface RateLimitClientOptions {
  /** Resolves relative URLs. */
  baseUrl?: string | URL
  /** Headers sent with every call (e.g. `{ 'x-api-key': '…' }`). */
  headers?: Record<string, string>
  /**
   * The fetch to use.
   * @default globalThis.fetch
   */
  fetch?: typeof globalThis.fetch
  /**
   * Retries after a 429 (or a 503 with Retry-After) per call.
   * @default 3
   */
  maxRetries?: number
  /**
   * The most one call may spend waiting (retries and pacing), in ms; a longer wait
   * returns the refused response instead.
   * @default 60000
   */
  maxWaitMs?: number
  /**
   * Up to this fraction is added at random to each wait, so callers refused together
   * do not come back together.
   * @default 0.1
   */
  jitter?: number
  /**
   * Spread calls so the server's advertised policy is not exceeded (no 429 when this
   * client is the identity's only caller).
   * @default false
   */
  pace?: boolean
  /** Aborts every call and every wait of this client. */
  signal?: AbortSignal
  /** @default Math.random */
  random?: () => number
}

export interface RateLimitRequestInit extends RequestInit {
  /**
   * Units this call costs (for pacing): e.g. the batch size when the server charges per input.
   * @default 1
   */
  cost?: number
}

interface PolicyEstimate {
  remaining: number
  /** ms until one more unit, as of `at`. */
  nextUnitMs: number | undefined
  /** ms per unit: w / q, an upper bound of the server's emission interval. */
  intervalMs: number | undefined
  at: number
}

function sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) { reject(signal.reason); return }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal!.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

function combine (a: AbortSignal | undefined, b: AbortSignal | null | undefined): AbortSignal | undefined {
  if (a === undefined) return b ?? undefined
  if (b === undefined || b === null) return a
  return AbortSignal.any([a, b])
}

export class RateLimitClient {
  readonly #options: RateLimitClientOptions
  readonly #fetch: typeof globalThis.fetch
  readonly #random: () => number
  readonly #estimates = new Map<string, PolicyEstimate>()
  // pacing decisions are taken one at a time, so concurrent calls do not spend one unit twice
  #pacing: Promise<void> = Promise.resolve()
  #last: RateLimitView | undefined

  constructor (options: RateLimitClientOptions = {}) {
    this.#options = options
    this.#fetch = options.fetch ?? globalThis.fetch
    this.#random = options.random ?? Math.random
  }

  /** What the last response said about the quota (undefined before the first). */
  get rateLimit (): RateLimitView | undefined {
    return this.#last
  }

  /**
   * fetch(), with waiting: a 429 (or 503 with Retry-After) is retried after Retry-After
   * plus jitter, up to `maxRetries` and `maxWaitMs`; a 413 or any other 4xx is returned
   * at once. The body must be re-sendable (a string, Buffer, Blob, FormData…) to be retried.
   */
  async fetch (input: string | URL, init: RateLimitRequestInit = {}): Promise<Response> {
    const { cost = 1, ...rest } = init
    const url = this.#options.baseUrl === undefined ? input : new URL(input, this.#options.baseUrl)
    const signal = combine(this.#options.signal, rest.signal)
    const headers = new Headers(this.#options.headers)
    for (const [k, v] of new Headers(rest.headers)) headers.set(k, v)
    const maxRetries = this.#options.maxRetries ?? 3
    const budget = { leftMs: this.#options.maxWaitMs ?? 60_000 }
    const retriable = rest.body === undefined || rest.body === null || !(rest.body instanceof ReadableStream)

    for (let attempt = 0; ; attempt++) {
      if (this.#options.pace === true) await this.#pace(cost, budget, signal)
      const response = await this.#fetch(url, { ...rest, headers, signal })
      const view = readRateLimit(response.headers)
      this.#remember(view)
      const waitable = response.status === 429 || (response.status === 503 && view.retryAfterMs !== undefined)
      if (!waitable || !retriable || attempt >= maxRetries) return response
      const waitMs = Math.ceil((view.retryAfterMs ?? 1000) * (1 + (this.#options.jitter ?? 0.1) * this.#random()))
      if (waitMs > budget.leftMs) return response
      budget.leftMs -= waitMs
      await response.body?.cancel().catch(() => {})
      await sleep(waitMs, signal)
    }
  }

  #remember (view: RateLimitView): void {
    this.#last = view
    const now = Date.now()
    for (const p of view.policies) {
      if (p.remaining === undefined) continue
      const intervalMs = p.quota !== undefined && p.quota > 0 && p.windowSeconds !== undefined ? (p.windowSeconds * 1000) / p.quota : undefined
      this.#estimates.set(p.name, { remaining: p.remaining, nextUnitMs: p.resetSeconds === undefined ? undefined : p.resetSeconds * 1000, intervalMs, at: now })
    }
  }

  /** Wait until every known policy holds `cost` units, then reserve them. */
  #pace (cost: number, budget: { leftMs: number }, signal: AbortSignal | undefined): Promise<void> {
    const turn = this.#pacing.then(async () => {
      let waitMs = 0
      const now = Date.now()
      for (const e of this.#estimates.values()) {
        if (e.remaining >= cost) continue
        const missing = cost - e.remaining
        // the first missing unit arrives within t (or one interval); each further one within w/q
        const first = Math.min(e.nextUnitMs ?? Infinity, e.intervalMs ?? Infinity)
        if (first === Infinity) continue
        const need = first + (missing - 1) * (e.intervalMs ?? first) - (now - e.at)
        if (need > waitMs) waitMs = need
      }
      waitMs = Math.ceil(waitMs)
      if (waitMs > budget.leftMs) waitMs = budget.leftMs
      if (waitMs > 0) {
        budget.leftMs -= waitMs
        await sleep(waitMs, signal)
      }
      const after = Date.now()
      for (const e of this.#estimates.values()) {
        // spend locally until the response tells the real figure
        const refill = e.intervalMs === undefined || e.remaining >= cost ? 0 : Math.floor((after - e.at) / e.intervalMs)
        e.remaining = Math.max(0, e.remaining + refill - cost)
        e.nextUnitMs = e.intervalMs
        e.at = after
      }
    })
    this.#pacing = turn.catch(() => {})
    return turn
  }
}

/** A client for `baseUrl` (see RateLimitClientOptions). */
export function createClient (options: RateLimitClientOptions = {}): RateLimitClient {
  return new RateLimitClient(options)
}
