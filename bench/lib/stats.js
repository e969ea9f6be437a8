// Pure helpers for the benchmarks: order statistics, the CPU steal read from /proc/stat, and
// a process's own CPU time per request.
import { readFileSync } from 'node:fs'

/** The q-quantile (0..1) of numbers, linear between order statistics; NaN when empty. */
export function quantile (values, q) {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const at = (sorted.length - 1) * q
  const lo = Math.floor(at)
  const hi = Math.ceil(at)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo)
}

export const median = (values) => quantile(values, 0.5)

/** Median with the smallest and largest value: how far the rounds spread. */
export function spread (values) {
  const finite = values.filter(Number.isFinite)
  if (finite.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 }
  return { median: median(finite), min: Math.min(...finite), max: Math.max(...finite), n: finite.length }
}

/**
 * The aggregate `cpu` line of a /proc/stat text, in clock ticks:
 * user nice system idle iowait irq softirq steal (guest time is already in user).
 */
export function parseCpuLine (text) {
  const line = text.split('\n').find(l => l.startsWith('cpu '))
  if (line === undefined) return undefined
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number)
  while (f.length < 8) f.push(0)
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f
  return { user, nice, system, idle, iowait, irq, softirq, steal, total: f.reduce((a, b) => a + b, 0) }
}

/** The CPU counters now, or undefined where /proc/stat does not exist. */
export function readCpu () {
  try {
    return parseCpuLine(readFileSync('/proc/stat', 'utf8'))
  } catch {
    return undefined
  }
}

/** Share of all CPU time that was stolen between two readings (0..1), and how busy the machine was. */
export function cpuBetween (before, after) {
  if (before === undefined || after === undefined) return { steal: NaN, busy: NaN }
  const total = after.total - before.total
  if (total <= 0) return { steal: 0, busy: 0 }
  const idle = (after.idle + after.iowait) - (before.idle + before.iowait)
  return { steal: (after.steal - before.steal) / total, busy: 1 - idle / total }
}

/** A `process.cpuUsage()` reading in µs: user + system. */
export const cpuUsOf = (usage) => usage.user + usage.system

/**
 * CPU µs per request between two `process.cpuUsage()` readings of one process; NaN when a
 * reading is missing or no request completed.
 */
export function cpuUsPerRequest (before, after, requests) {
  if (before == null || after == null || !(requests > 0)) return NaN
  return (cpuUsOf(after) - cpuUsOf(before)) / requests
}

/** What each run adds over a baseline (a median of the baseline's runs): their spread. */
export function addedOver (values, baseline) {
  return spread(values.map(v => v - baseline))
}

/** One added cost over another (fastify-gcra's over @fastify/rate-limit's); NaN unless the divisor is above 0. */
export function addedRatio (mine, theirs) {
  return Number.isFinite(mine) && Number.isFinite(theirs) && theirs > 0 ? mine / theirs : NaN
}

/** A number for a table: `digits` decimals, '–' for what was not measured. */
export function fmt (value, digits = 0) {
  if (value === undefined || value === null || !Number.isFinite(value)) return '–'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export const pct = (share, digits = 1) => Number.isFinite(share) ? `${(share * 100).toFixed(digits)} %` : '–'
