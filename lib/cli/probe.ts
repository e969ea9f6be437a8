/**
 * The probe: send bounded traffic at a URL and summarise what the rate limiter said
 * (statuses, remaining quota and reset over time, Retry-After values, admitted rate
 * against the advertised policy). Used by `fastify-gcra probe`.
 */
import { readRateLimit, type PolicyView } from '../client/fields.js'

export interface ProbeOptions {
  url: string
  /** Stop after this many requests. */
  requests: number
  /** Stop after this long (ms). */
  durationMs: number
  /** Requests per second to start at most; undefined: as fast as `concurrency` allows. */
  rate?: number
  /** Requests in flight at once. */
  concurrency: number
  method: string
  headers: Record<string, string>
  body?: string
  /** Stops the probe (Ctrl-C); what was seen is still summarised. */
  signal?: AbortSignal
  /** The longest one request may take (ms). @default 10000 */
  requestTimeoutMs?: number
  fetch?: typeof globalThis.fetch
}

export interface ProbeSecond {
  second: number
  admitted: number
  refused: number
  other: number
  /** The last remaining/reset seen in that second. */
  remaining?: number
  resetSeconds?: number
}

export interface ProbeSummary {
  url: string
  method: string
  stopped: 'requests' | 'duration' | 'interrupted'
  sent: number
  completed: number
  elapsedMs: number
  /** 2xx responses. */
  admitted: number
  /** 429 responses. */
  refused: number
  /** Count per status code (every status, 2xx and 429 included). */
  statuses: Record<string, number>
  /** Requests that got no response (network error, timeout). */
  errors: number
  /** The first of those errors' messages. */
  firstError?: string
  /** Requests in flight when the probe was interrupted (sent, perhaps charged, not answered). */
  aborted: number
  remaining: { first?: number, min?: number, last?: number }
  resetSeconds: { first?: number, last?: number }
  retryAfterSeconds: { count: number, min?: number, median?: number, max?: number }
  admittedPerSecond: number
  /** The advertised policies, with their sustained rate (q / w). */
  policies: Array<PolicyView & { perSecond?: number }>
  /**
   * At most how many requests GCRA admits over the run if every bucket was full at the
   * start: per policy, the most remaining it reported + 1 + q/w × elapsed; the smallest, and whose.
   */
  bound?: { policy: string, admitted: number }
  timeline: ProbeSecond[]
}

export interface ProbeProgress {
  sent: number
  /** Requests answered (with any status). */
  completed: number
  admitted: number
  refused: number
  other: number
  /** Requests that got no response. */
  errors: number
  remaining?: number
  elapsedMs: number
}

function describeError (error: unknown): string {
  const e = error as { message?: string, cause?: { message?: string, code?: string } }
  const cause = e?.cause?.code ?? e?.cause?.message
  return `${e?.message ?? String(error)}${cause === undefined ? '' : ` (${cause})`}`
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise(resolve => {
  if (signal?.aborted === true) { resolve(); return }
  const timer = setTimeout(done, ms)
  function done (): void { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve() }
  signal?.addEventListener('abort', done, { once: true })
})

export async function runProbe (options: ProbeOptions, onProgress?: (p: ProbeProgress) => void): Promise<ProbeSummary> {
  const doFetch = options.fetch ?? globalThis.fetch
  const started = performance.now()
  const deadline = started + options.durationMs
  const statuses: Record<string, number> = {}
  const retryAfters: number[] = []
  const timeline = new Map<number, ProbeSecond>()
  const remaining: ProbeSummary['remaining'] = {}
  const resetSeconds: ProbeSummary['resetSeconds'] = {}
  let policies: PolicyView[] = []
  // per policy, the most it said was left: the fullest the bucket was seen
  const mostRemaining = new Map<string, number>()
  let sent = 0
  let completed = 0
  let admitted = 0
  let refused = 0
  let errors = 0
  let aborted = 0
  let firstError: string | undefined
  // the next request's start on the --rate schedule; after a stall it resumes, it does not catch up
  let nextAt = started
  let stopped: ProbeSummary['stopped'] = 'requests'

  // a function, not a property read, so TypeScript does not narrow it across awaits
  const isAborted = (): boolean => options.signal?.aborted === true
  const progress = (): void => onProgress?.({ sent, completed, admitted, refused, other: completed - admitted - refused, errors, remaining: remaining.last, elapsedMs: performance.now() - started })

  async function worker (): Promise<void> {
    for (;;) {
      if (isAborted()) { stopped = 'interrupted'; return }
      if (sent >= options.requests) return
      const now = performance.now()
      if (now >= deadline) { stopped = 'duration'; return }
      // the ticket is taken before any wait, so concurrent workers never overshoot --requests;
      // it is given back only for a request that was never sent
      sent++
      if (options.rate !== undefined) {
        const at = Math.max(now, nextAt)
        if (at >= deadline) { stopped = 'duration'; sent--; return }
        nextAt = at + 1000 / options.rate
        if (at > now) await sleep(at - now, options.signal)
        if (isAborted()) { stopped = 'interrupted'; sent--; return }
      }
      const timeout = AbortSignal.timeout(options.requestTimeoutMs ?? 10_000)
      const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
      try {
        const response = await doFetch(options.url, { method: options.method, headers: options.headers, body: options.body, signal })
        await response.arrayBuffer()
        const view = readRateLimit(response.headers)
        const second = Math.floor((performance.now() - started) / 1000)
        const slot = timeline.get(second) ?? { second, admitted: 0, refused: 0, other: 0 }
        timeline.set(second, slot)
        statuses[response.status] = (statuses[response.status] ?? 0) + 1
        if (response.status >= 200 && response.status < 300) { admitted++; slot.admitted++ } else if (response.status === 429) { refused++; slot.refused++ } else slot.other++
        if (view.policies.some(p => p.quota !== undefined)) policies = [...view.policies]
        for (const p of view.policies) if (p.remaining !== undefined) mostRemaining.set(p.name, Math.max(mostRemaining.get(p.name) ?? 0, p.remaining))
        if (view.remaining !== undefined) {
          remaining.first ??= view.remaining
          remaining.min = Math.min(remaining.min ?? Infinity, view.remaining)
          remaining.last = view.remaining
          slot.remaining = view.remaining
        }
        if (view.resetSeconds !== undefined) {
          resetSeconds.first ??= view.resetSeconds
          resetSeconds.last = view.resetSeconds
          slot.resetSeconds = view.resetSeconds
        }
        if (response.status === 429 && view.retryAfterMs !== undefined) retryAfters.push(view.retryAfterMs / 1000)
      } catch (error) {
        if (isAborted()) { stopped = 'interrupted'; aborted++; return }
        errors++
        firstError ??= describeError(error)
        progress()
        continue
      }
      completed++
      progress()
    }
  }

  await Promise.all(Array.from({ length: options.concurrency }, worker))
  const elapsedMs = performance.now() - started
  retryAfters.sort((a, b) => a - b)
  const withRates = policies.map(p => ({
    ...p,
    perSecond: p.quota !== undefined && p.windowSeconds !== undefined ? p.quota / p.windowSeconds : undefined,
  }))
  // per policy: what a full bucket at the first response allows over the run; the smallest wins
  let bound: ProbeSummary['bound']
  for (const p of withRates) {
    const first = mostRemaining.get(p.name)
    if (p.perSecond === undefined || first === undefined) continue
    const most = Math.floor(first + 1 + p.perSecond * (elapsedMs / 1000))
    if (bound === undefined || most < bound.admitted) bound = { policy: p.name, admitted: most }
  }
  return {
    url: options.url,
    method: options.method,
    stopped,
    sent,
    completed,
    elapsedMs,
    admitted,
    refused,
    statuses,
    errors,
    firstError,
    aborted,
    remaining,
    resetSeconds,
    retryAfterSeconds: {
      count: retryAfters.length,
      min: retryAfters[0],
      median: retryAfters.length === 0 ? undefined : retryAfters[Math.floor((retryAfters.length - 1) / 2)],
      max: retryAfters[retryAfters.length - 1],
    },
    admittedPerSecond: elapsedMs > 0 ? admitted / (elapsedMs / 1000) : 0,
    policies: withRates,
    bound,
    timeline: [...timeline.values()].sort((a, b) => a.second - b.second),
  }
}

const fixed = (n: number | undefined, digits = 2): string => (n === undefined ? '-' : Number.isInteger(n) ? String(n) : n.toFixed(digits))

function table (rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map(r => r[c]!.length)))
  return rows.map(r => '  ' + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n')
}

/** The summary as the plain-text report the CLI prints. */
export function formatSummary (s: ProbeSummary): string {
  const out: string[] = []
  const extra = [s.errors > 0 ? `${s.errors} without response` : '', s.aborted > 0 ? `${s.aborted} cut off` : ''].filter(x => x !== '').join(', ')
  out.push(`${s.method} ${s.url}: ${s.completed} responses${extra === '' ? '' : ` (${extra})`} in ${(s.elapsedMs / 1000).toFixed(1)} s (stopped: ${s.stopped})`, '')
  const statusRows = [['status', 'count']]
  for (const [code, count] of Object.entries(s.statuses).sort()) {
    statusRows.push([code === '429' ? '429 refused' : code.startsWith('2') ? `${code} admitted` : code, String(count)])
  }
  if (s.errors > 0) statusRows.push(['no response', String(s.errors)])
  if (s.aborted > 0) statusRows.push(['cut off by Ctrl-C', String(s.aborted)])
  out.push(table(statusRows), '')
  if (s.policies.length > 0) {
    const rows = [['policy', 'quota', 'window', 'rate/s']]
    for (const p of s.policies) rows.push([p.name === '' ? '(X-RateLimit)' : `"${p.name}"`, fixed(p.quota), p.windowSeconds === undefined ? '-' : `${p.windowSeconds}s`, fixed(p.perSecond, 3)])
    out.push(table(rows), '')
  }
  if (s.firstError !== undefined) out.push(`  first error: ${s.firstError}`, '')
  out.push(`  admitted: ${s.admitted} in ${(s.elapsedMs / 1000).toFixed(2)} s (${s.admittedPerSecond.toFixed(2)}/s)` +
    (s.bound === undefined ? '' : `; GCRA allows at most ${s.bound.admitted} for "${s.bound.policy}" if its bucket was full at the start`))
  out.push(`  remaining: first ${fixed(s.remaining.first)}, min ${fixed(s.remaining.min)}, last ${fixed(s.remaining.last)}; ` +
    `seconds to more quota: first ${fixed(s.resetSeconds.first)}, last ${fixed(s.resetSeconds.last)}`)
  const ra = s.retryAfterSeconds
  out.push(`  Retry-After: ${ra.count === 0 ? 'none' : `${ra.count} values, min ${fixed(ra.min)} s, median ${fixed(ra.median)} s, max ${fixed(ra.max)} s`}`, '')
  if (s.timeline.length > 0) {
    const rows = [['second', 'admitted', 'refused', 'other', 'remaining', 'reset s']]
    const shown = s.timeline.length > 40 ? [...s.timeline.slice(0, 20), undefined, ...s.timeline.slice(-19)] : s.timeline
    for (const t of shown) {
      rows.push(t === undefined ? ['…', '', '', '', '', ''] : [String(t.second), String(t.admitted), String(t.refused), String(t.other), fixed(t.remaining), fixed(t.resetSeconds)])
    }
    out.push(table(rows))
  }
  return out.join('\n')
}
