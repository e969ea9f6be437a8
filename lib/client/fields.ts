/**
 * Reading rate-limit fields from a response: IETF draft-10 `RateLimit` and
 * `RateLimit-Policy`, the `X-RateLimit-*` trio, and `Retry-After`. Malformed values are
 * ignored; nothing here throws.
 */
import { parseList, Token, type BareItem } from './structured.js'

/** What a response said about one policy. */
export interface PolicyView {
  readonly name: string
  /** `q`: units per window. */
  readonly quota?: number
  /** `w`: the window, in seconds. */
  readonly windowSeconds?: number
  /** `r`: units left. */
  readonly remaining?: number
  /** `t`: seconds until more quota. */
  readonly resetSeconds?: number
}

/** What one response said about the caller's quota. */
export interface RateLimitView {
  /** Policies by name, from `RateLimit-Policy` and `RateLimit` (or one unnamed legacy policy). */
  readonly policies: readonly PolicyView[]
  /** Units left in the most restrictive policy. */
  readonly remaining?: number
  /** Seconds until that policy has more quota. */
  readonly resetSeconds?: number
  /** `Retry-After`, in ms from when the response was read. */
  readonly retryAfterMs?: number
}

/** Header access over fetch `Headers` or a plain object (as `app.inject` returns). */
export type HeadersLike = { get(name: string): string | null } | Record<string, unknown>

function header (headers: HeadersLike, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined
  }
  const value = (headers as Record<string, unknown>)[name]
  if (typeof value === 'string') return value
  if (typeof value === 'number') return String(value)
  if (Array.isArray(value) && value.every(v => typeof v === 'string')) return value.join(', ')
  return undefined
}

const isCount = (v: BareItem | undefined): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0
const nameOf = (v: BareItem): string | undefined => (typeof v === 'string' ? v : v instanceof Token ? v.value : undefined)

/**
 * `Retry-After` in ms: delay-seconds, or an HTTP date (a date in the past gives 0).
 * Anything else: undefined.
 */
export function parseRetryAfter (value: string | null | undefined, nowMs = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined
  const text = value.trim()
  if (/^\d{1,10}$/.test(text)) return Number(text) * 1000
  // an HTTP date names its weekday and its zone: "Sun, 06 Nov 1994 08:49:37 GMT"
  if (!/^[A-Za-z]{3},? .*\b(GMT|UTC)$/.test(text)) return undefined
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs)
}

function legacyCount (value: string | undefined): number | undefined {
  return value !== undefined && /^\d{1,15}$/.test(value.trim()) ? Number(value.trim()) : undefined
}

/** Read every rate-limit field of a response. */
export function readRateLimit (headers: HeadersLike, nowMs = Date.now()): RateLimitView {
  const byName = new Map<string, { quota?: number, windowSeconds?: number, remaining?: number, resetSeconds?: number }>()
  const entry = (name: string) => {
    let e = byName.get(name)
    if (e === undefined) byName.set(name, e = {})
    return e
  }

  for (const item of parseList(header(headers, 'ratelimit-policy')) ?? []) {
    const name = nameOf(item.value)
    const q = item.params.get('q')
    const w = item.params.get('w')
    if (name === undefined || !isCount(q)) continue
    const e = entry(name)
    e.quota = q
    if (isCount(w) && w > 0) e.windowSeconds = w
  }
  for (const item of parseList(header(headers, 'ratelimit')) ?? []) {
    const name = nameOf(item.value)
    const r = item.params.get('r')
    const t = item.params.get('t')
    if (name === undefined || !isCount(r)) continue
    const e = entry(name)
    e.remaining = r
    if (isCount(t)) e.resetSeconds = t
  }
  if (byName.size === 0) {
    const remaining = legacyCount(header(headers, 'x-ratelimit-remaining'))
    const quota = legacyCount(header(headers, 'x-ratelimit-limit'))
    let reset = legacyCount(header(headers, 'x-ratelimit-reset'))
    // some servers send an epoch time here, not a delay
    if (reset !== undefined && reset > 1e9) reset = Math.max(0, Math.ceil(reset - nowMs / 1000))
    if (remaining !== undefined || quota !== undefined) {
      byName.set('', { quota, remaining, resetSeconds: reset })
    }
  }

  const policies: PolicyView[] = [...byName].map(([name, e]) => ({ name, ...e }))
  let tightest: PolicyView | undefined
  for (const p of policies) {
    if (p.remaining === undefined) continue
    if (tightest === undefined || p.remaining < tightest.remaining! ||
      (p.remaining === tightest.remaining && (p.resetSeconds ?? 0) > (tightest.resetSeconds ?? 0))) tightest = p
  }
  return {
    policies,
    remaining: tightest?.remaining,
    resetSeconds: tightest?.resetSeconds,
    retryAfterMs: parseRetryAfter(header(headers, 'retry-after'), nowMs),
  }
}
