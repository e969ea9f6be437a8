// What every scenario file shares: run alone (`node bench/<name>.js [--quick] [--out file]`)
// or from bench/run.js, which starts each scenario in a child process of its own.
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { cpuBetween, readCpu } from './stats.js'

export function isMain (metaUrl) {
  return process.argv[1] !== undefined && fileURLToPath(metaUrl) === process.argv[1]
}

/** Run `run({ quick, profile })` when the file is the entry point; its result goes to --out (JSON) or stdout. */
export async function main (metaUrl, run) {
  if (!isMain(metaUrl)) return
  const args = process.argv.slice(2)
  const quick = args.includes('--quick')
  const profile = args.includes('--profile')
  const outAt = args.indexOf('--out')
  const started = Date.now()
  const cpu = readCpu()
  const result = await run({ quick, profile })
  result.seconds = (Date.now() - started) / 1000
  result.cpu = cpuBetween(cpu, readCpu())
  const text = JSON.stringify(result, null, 2)
  if (outAt !== -1) writeFileSync(args[outAt + 1], text)
  else process.stdout.write(text + '\n')
  process.exit(0)
}

// Measured runs whose CPU steal is above this share are run again, not averaged in.
export const STEAL_LIMIT = 0.10
export const MAX_REPEATS = 2

/** `measure()` again while the machine had its CPU stolen (at most MAX_REPEATS more times). */
export async function withLowSteal (measure) {
  let repeats = 0
  for (;;) {
    const before = readCpu()
    const value = await measure()
    const { steal, busy } = cpuBetween(before, readCpu())
    if (!(steal > STEAL_LIMIT) || repeats >= MAX_REPEATS) return { value, steal, busy, repeats, highSteal: steal > STEAL_LIMIT }
    repeats++
  }
}
