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
  /** Units left as of `at` (may be negative: reserved beyond what was known). */
  remaining: number
  /** ms until one more unit, as of `at` (the server's `t`). */
  nextUnitMs: number | undefined
  /** ms per unit: w / q (undefined without a policy). */
  intervalMs: number | undefined
  at: number
}

// setTimeout cannot wait longer; a wait beyond it is beyond any budget
const MAX_TIMER_MS = 2 ** 31 - 1

function sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) { reject(signal.reason); return }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal!.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** `promise`, or the signal's reason when it aborts first. */
function untilAborted<T> (promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      v => { signal.removeEventListener('abort', onAbort); resolve(v) },
      e => { signal.removeEventListener('abort', onAbort); reject(e) },
    )
  })
}

function combine (a: AbortSignal | undefined, b: AbortSignal | null | undefined): AbortSignal | undefined {
  if (a === undefined) return b ?? undefined
  if (b === undefined || b === null) return a
  return AbortSignal.any([a, b])
}

/** Bodies fetch can send again: a retry must not send an emptied stream. */
function replayable (body: RequestInit['body']): boolean {
  return body === undefined || body === null || typeof body === 'string' ||
    body instanceof ArrayBuffer || ArrayBuffer.isView(body) || body instanceof Blob ||
    body instanceof URLSearchParams || body instanceof FormData
}

/** Spend `cost` units of an estimate at `now` (debt allowed) until a response tells the real figure. */
function spend (e: PolicyEstimate, cost: number, now: number): void {
  const elapsed = now - e.at
  const gained = arrived(e, elapsed)
  const first = e.nextUnitMs ?? e.intervalMs
  if (gained > 0 && first !== undefined) {
    const per = e.intervalMs ?? first
    e.nextUnitMs = per - (elapsed - (first + (gained - 1) * per))
  } else if (e.nextUnitMs !== undefined) {
    e.nextUnitMs = Math.max(0, e.nextUnitMs - elapsed)
  }
  e.remaining = e.remaining + gained - cost
  e.at = now
}

/** Units arrived in `elapsedMs` since an estimate was taken (a lower bound). */
function arrived (e: PolicyEstimate, elapsedMs: number): number {
  const first = e.nextUnitMs ?? e.intervalMs
  if (first === undefined || elapsedMs < first) return 0
  return e.intervalMs === undefined ? 1 : 1 + Math.floor((elapsedMs - first) / e.intervalMs)
}

export class RateLimitClient {
  readonly #options: RateLimitClientOptions
  readonly #fetch: typeof globalThis.fetch
  readonly #random: () => number
  /** route ('METHOD origin/path') → policy name → estimate. */
  readonly #estimates = new Map<string, Map<string, PolicyEstimate>>()
  /** Units reserved and sent, not yet reflected in a response, per policy name. */
  readonly #inflight = new Map<string, number>()
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
   * at once. Only a re-sendable body (string, bytes, Blob, FormData, URLSearchParams) is
   * retried; a stream is sent once.
   */
  async fetch (input: string | URL, init: RateLimitRequestInit = {}): Promise<Response> {
    const { cost = 1, ...rest } = init
    const url = new URL(input, this.#options.baseUrl)
    const route = `${(rest.method ?? 'GET').toUpperCase()} ${url.origin}${url.pathname}`
    const signal = combine(this.#options.signal, rest.signal)
    const headers = new Headers(this.#options.headers)
    for (const [k, v] of new Headers(rest.headers)) headers.set(k, v)
    const maxRetries = this.#options.maxRetries ?? 3
    const budget = { leftMs: this.#options.maxWaitMs ?? 60_000 }
    const retriable = replayable(rest.body)

    for (let attempt = 0; ; attempt++) {
      const reserved = this.#options.pace === true ? await this.#reserve(route, cost, budget, signal) : undefined
      let response: Response
      try {
        response = await this.#fetch(url, { ...rest, headers, signal })
      } catch (error) {
        reserved?.settle(undefined)
        throw error
      }
      const view = readRateLimit(response.headers)
      this.#last = view
      if (reserved === undefined) this.#remember(route, view)
      else reserved.settle(view)
      const waitable = response.status === 429 || (response.status === 503 && view.retryAfterMs !== undefined)
      if (!waitable || !retriable || attempt >= maxRetries) return response
      const waitMs = Math.ceil((view.retryAfterMs ?? 1000) * (1 + (this.#options.jitter ?? 0.1) * this.#random()))
      if (waitMs > budget.leftMs || waitMs > MAX_TIMER_MS) return response
      budget.leftMs -= waitMs
      await response.body?.cancel().catch(() => {})
      await sleep(waitMs, signal)
    }
  }

  /** Take in what a response said about `route`'s policies, net of units still in flight. */
  #remember (route: string, view: RateLimitView): void {
    // a route with no policies is known too: nothing to pace there
    const now = Date.now()
    const estimates = this.#estimates.get(route) ?? new Map<string, PolicyEstimate>()
    this.#estimates.set(route, estimates)
    for (const p of view.policies) {
      if (p.remaining === undefined) continue
      const intervalMs = p.quota !== undefined && p.quota > 0 && p.windowSeconds !== undefined ? (p.windowSeconds * 1000) / p.quota : undefined
      estimates.set(p.name, {
        remaining: p.remaining - (this.#inflight.get(p.name) ?? 0),
        nextUnitMs: p.resetSeconds === undefined ? undefined : p.resetSeconds * 1000,
        intervalMs,
        at: now,
      })
    }
  }

  /**
   * Wait until every known policy of `route` holds `cost` units, then reserve them. The
   * first call on a route holds the others until its response tells the policies.
   * Returns what to do once the response (or its failure) is in.
   */
  async #reserve (route: string, cost: number, budget: { leftMs: number }, signal: AbortSignal | undefined): Promise<{ settle: (view: RateLimitView | undefined) => void }> {
    const queuedAt = Date.now()
    let release!: () => void
    const previous = this.#pacing
    const mine = new Promise<void>(resolve => { release = resolve })
    this.#pacing = previous.then(() => mine)
    try {
      await untilAborted(previous, signal)
    } catch (error) {
      release()
      throw error
    }
    budget.leftMs -= Date.now() - queuedAt
    const estimates = this.#estimates.get(route)
    if (estimates === undefined) {
      // nothing known yet: this call goes alone, and the turn passes on with its answer
      return { settle: (view) => { if (view !== undefined) this.#remember(route, view); release() } }
    }
    try {
      const now = Date.now()
      let waitMs = 0
      for (const e of estimates.values()) {
        const first = e.nextUnitMs ?? e.intervalMs
        if (first === undefined) continue
        const elapsed = now - e.at
        const gained = arrived(e, elapsed)
        const missing = Math.ceil(cost - (e.remaining + gained))
        if (missing <= 0) continue
        // unit number gained + missing arrives at first + (gained + missing - 1) · per after `at`
        const need = first + (gained + missing - 1) * (e.intervalMs ?? first) - elapsed
        if (need > waitMs) waitMs = need
      }
      waitMs = Math.ceil(waitMs)
      // a wait past the budget would end in a refusal anyway: send now and let the server say so
      if (waitMs > 0 && waitMs <= budget.leftMs && waitMs <= MAX_TIMER_MS) {
        budget.leftMs -= waitMs
        await sleep(waitMs, signal)
      }
      const after = Date.now()
      const names = [...estimates.keys()]
      for (const routeEstimates of this.#estimates.values()) {
        for (const name of names) {
          const e = routeEstimates.get(name)
          if (e !== undefined) spend(e, cost, after)
        }
      }
      for (const name of names) this.#inflight.set(name, (this.#inflight.get(name) ?? 0) + cost)
      return {
        settle: (view) => {
          for (const name of names) this.#inflight.set(name, (this.#inflight.get(name) ?? 0) - cost)
          if (view !== undefined) this.#remember(route, view)
        },
      }
    } finally {
      release()
    }
  }
}

/** A client for `baseUrl` (see RateLimitClientOptions). */
export function createClient (options: RateLimitClientOptions = {}): RateLimitClient {
  return new RateLimitClient(options)
}
