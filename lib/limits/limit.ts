/**
 * Limit definitions: parsing `'10/minute'`, `'100/15m'`, `{ max, per, burst, name }`
 * and duration strings into one normalised shape. The period of a limit string is read
 * by the same parser as `per`, so every spelling `per` accepts works after the slash.
 * Pure; throws nothing but returns `undefined` for what it cannot read, so the caller can
 * report the option's path.
 */
import { parse } from '@lukeed/ms'

export const UNIT_MS = {
  ms: 1,
  second: 1000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
} as const

/**
 * A limit as the user may write it: `'N/period'`, the period in any spelling `per` takes
 * (`'10/minute'`, `'10/min'`, `'100/15 minutes'`, `'100/15m'`, `'5/30s'`), or an object.
 */
export type LimitSpec = string | LimitObject

export interface LimitObject {
  /** Requests (cost units) admitted per `per`. A positive integer. */
  max: number
  /** The period: milliseconds, or a duration string such as `'1 minute'`, `'30s'`, `'15 minutes'`. */
  per: number | string
  /**
   * How many units may be spent at once by a caller whose bucket is full.
   * @default max
   */
  burst?: number
  /**
   * The policy's name in the `RateLimit` fields and in 429 bodies. Printable ASCII without `"` or `\`.
   * @default derived from max and per, e.g. `'10/minute'`
   */
  name?: string
}

/** A validated limit, before any tier multiplier. */
export interface Limit {
  readonly name: string
  readonly max: number
  readonly perMs: number
  readonly burst: number
}

// @lukeed/ms backtracks quadratically on a long run of digits: no duration needs this many characters
const DURATION_MAX = 32
// @lukeed/ms' own unit words, one at a time: it would also read '5mh' (as 5 minutes).
// No years: to it a year is 365.25 days, not what '1 year' reads as; write '365 days'.
const UNIT = /^(?:m(?:illiseconds?|s(?:ecs?)?)|s(?:ec(?:onds?|s)?)?|m(?:in(?:utes?|s)?)?|h(?:ours?|rs?)?|d(?:ays?)?|w(?:eeks?|ks?)?)$/i
// 'N/period': the count, then whatever `parseDuration` reads ('minute', 'min', '15 minutes', '15m')
const LIMIT = /^\s*(\d+)\s*\/(.*)$/s
const NAME = /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/

/** Milliseconds of a duration string (`'1 minute'`, `'30s'`, `'500ms'`, `'1 week'`), or undefined. */
export function parseDuration (text: string): number | undefined {
  if (typeof text !== 'string') return undefined
  const trimmed = text.trim()
  // no unit, no guess: '500' may be meant as seconds (a number `per` is ms)
  if (trimmed.length > DURATION_MAX || !/[a-z]$/i.test(trimmed)) return undefined
  // a bare unit ('hour') is one of it; any blank may part count and unit, as before
  const duration = trimmed.replace(/^(?=[a-z])/i, '1').replace(/(\d)\s+(?=[a-z])/i, '$1')
  if (!UNIT.test(/[a-z]+$/i.exec(duration)![0])) return undefined
  const ms = parse(duration)
  return ms !== undefined && Number.isSafeInteger(ms) && ms > 0 ? ms : undefined
}

/**
 * `'N/period'` as `{ max, perMs }`, or undefined. The period is a duration as `per` takes
 * it, a bare unit meaning one of it: `'10/minute'`, `'10/min'`, `'10/1m'`, `'100/15 minutes'`,
 * `'100/15m'`, `'5/30s'`, `'1000/1d'`.
 */
export function parseLimitString (text: string): { max: number, perMs: number } | undefined {
  if (typeof text !== 'string') return undefined
  const match = LIMIT.exec(text)
  if (match === null) return undefined
  const max = Number(match[1])
  const perMs = parseDuration(match[2]!)
  if (!Number.isSafeInteger(max) || max < 1 || perMs === undefined) return undefined
  return { max, perMs }
}

/** A period in words: `'minute'`, `'15 minutes'`, `'1500ms'`. */
export function formatPeriod (perMs: number): string {
  for (const unit of ['day', 'hour', 'minute', 'second'] as const) {
    const size = UNIT_MS[unit]
    if (perMs % size === 0) {
      const count = perMs / size
      return count === 1 ? unit : `${count} ${unit}s`
    }
  }
  return `${perMs}ms`
}

export function isValidName (name: string): boolean {
  return NAME.test(name)
}

export type LimitProblem = { path: string, expected: string }

/**
 * Normalise one limit. Returns the limit, or where it is wrong (relative path) and what
 * was expected there.
 */
export function normaliseLimit (spec: LimitSpec): Limit | LimitProblem {
  if (typeof spec === 'string') {
    const parsed = parseLimitString(spec)
    if (parsed === undefined) {
      return { path: '', expected: "a limit like '10/minute', '10/min', '100/15 minutes' or '100/15m' (a count, '/', then a duration such as 'second', '30s', '2 hours' or '1d')" }
    }
    return Object.freeze({ name: `${parsed.max}/${formatPeriod(parsed.perMs)}`, max: parsed.max, perMs: parsed.perMs, burst: parsed.max })
  }
  const perMs = typeof spec.per === 'number' ? spec.per : parseDuration(spec.per)
  if (perMs === undefined || !Number.isSafeInteger(perMs) || perMs < 1) {
    return { path: '.per', expected: "a whole number of milliseconds >= 1 or a duration such as '1 minute', '30s', '15 minutes'" }
  }
  const burst = spec.burst ?? spec.max
  const name = spec.name ?? `${spec.max}/${formatPeriod(perMs)}${burst === spec.max ? '' : ` burst ${burst}`}`
  if (!isValidName(name)) {
    return { path: '.name', expected: 'a name of 1 to 64 printable ASCII characters without \'"\' or \'\\\'' }
  }
  return Object.freeze({ name, max: spec.max, perMs, burst })
}
