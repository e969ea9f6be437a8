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
  // field names are case-insensitive; a plain object may spell them any way
  const record = headers as Record<string, unknown>
  const key = name in record ? name : Object.keys(record).find(k => k.toLowerCase() === name)
  const value = key === undefined ? undefined : record[key]
  if (typeof value === 'string') return value
  if (typeof value === 'number') return String(value)
  if (Array.isArray(value) && value.every(v => typeof v === 'string')) return value.join(', ')
  return undefined
}

const isCount = (v: BareItem | undefined): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0
const nameOf = (v: BareItem): string | undefined => (typeof v === 'string' ? v : v instanceof Token ? v.value : undefined)

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const DAY = '(Mon|Tue|Wed|Thu|Fri|Sat|Sun)'
const LONG_DAY = '(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)'
const MONTH = `(${MONTHS.join('|')})`
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})'
// RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime forms recipients must accept
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`)
const RFC_850 = new RegExp(`^${LONG_DAY}, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`)
const ASCTIME = new RegExp(`^${DAY} ${MONTH} ( \\d|\\d{2}) ${TIME} (\\d{4})$`)

/** An HTTP date as ms since the epoch, or undefined (a date that does not exist included). */
export function parseHttpDate (text: string, nowMs = Date.now()): number | undefined {
  // [day, month, year, hh, mm, ss] as text
  let parts: string[]
  let m = IMF_FIXDATE.exec(text)
  if (m !== null) {
    parts = [m[2]!, m[3]!, m[4]!, m[5]!, m[6]!, m[7]!]
  } else if ((m = RFC_850.exec(text)) !== null) {
    // a two-digit year more than 50 years ahead is in the past century
    let year = 2000 + Number(m[4])
    if (year > new Date(nowMs).getUTCFullYear() + 50) year -= 100
    parts = [m[2]!, m[3]!, String(year), m[5]!, m[6]!, m[7]!]
  } else if ((m = ASCTIME.exec(text)) !== null) {
    parts = [m[3]!.trim(), m[2]!, m[7]!, m[4]!, m[5]!, m[6]!]
  } else {
    return undefined
  }
  const [day, month, year, hh, mm, ss] = parts.map((p, i) => (i === 1 ? MONTHS.indexOf(p) : Number(p))) as [number, number, number, number, number, number]
  const at = Date.UTC(year, month, day, hh, mm, ss)
  const d = new Date(at)
  // Date.UTC rolls 31 Feb over into March: such a date does not exist
  if (d.getUTCDate() !== day || d.getUTCMonth() !== month || hh > 23 || mm > 59 || ss > 60) return undefined
  return at
}

/**
 * `Retry-After` in ms: delay-seconds, or an HTTP date (a date in the past gives 0).
 * Anything else: undefined.
 */
export function parseRetryAfter (value: string | null | undefined, nowMs = Date.now()): number | undefined {
  if (value === null || value === undefined) return undefined
  const text = value.trim()
  if (/^\d{1,10}$/.test(text)) return Number(text) * 1000
  const at = parseHttpDate(text, nowMs)
  return at === undefined ? undefined : Math.max(0, at - nowMs)
}

/** The named items of a field that carry the count `required`, with the count `optional` if valid. */
function * counts (field: string | undefined, required: string, optional: string): Generator<[string, number, number | undefined]> {
  for (const item of parseList(field) ?? []) {
    const name = nameOf(item.value)
    const need = item.params.get(required)
    const maybe = item.params.get(optional)
    if (name !== undefined && isCount(need)) yield [name, need, isCount(maybe) ? maybe : undefined]
  }
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

  for (const [name, q, w] of counts(header(headers, 'ratelimit-policy'), 'q', 'w')) {
    const e = entry(name)
    e.quota = q
    if (w !== undefined && w > 0) e.windowSeconds = w
  }
  for (const [name, r, t] of counts(header(headers, 'ratelimit'), 'r', 't')) {
    const e = entry(name)
    e.remaining = r
    if (t !== undefined) e.resetSeconds = t
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
