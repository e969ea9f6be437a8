#!/usr/bin/env node
/**
 * `fastify-gcra probe <url>`: check a deployed limit from the outside. Bounded in count
 * and time; Ctrl-C stops it and prints what it saw.
 */
import { parseArgs } from 'node:util'
import { formatSummary, runProbe } from './probe.js'

const USAGE = `Usage: fastify-gcra probe <url> [options]

  -n, --requests N      stop after N requests            (default 100, at most 100000)
  -d, --duration S      stop after S seconds             (default 30, at most 600)
  -r, --rate R          start at most R requests/second  (default: as fast as -c allows)
  -c, --concurrency C   requests in flight               (default 1, at most 256)
  -X, --method M        HTTP method                      (default GET, POST with --data)
  -H, --header 'K: V'   a request header (repeatable)
      --data BODY       request body (JSON bodies get content-type: application/json)
      --json            print the summary as JSON
  -h, --help            this text`

function fail (message: string): never {
  process.stderr.write(`fastify-gcra: ${message}\n\n${USAGE}\n`)
  process.exit(2)
}

function numberArg (value: string | undefined, name: string, min: number, max: number, fallback: number | undefined, whole = false): number | undefined {
  if (value === undefined) return fallback
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max || (whole && !Number.isInteger(n))) {
    fail(`${name} must be a ${whole ? 'whole ' : ''}number from ${min} to ${max}, got '${value}'`)
  }
  return n
}

async function main (argv: string[]): Promise<void> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        requests: { type: 'string', short: 'n' },
        duration: { type: 'string', short: 'd' },
        rate: { type: 'string', short: 'r' },
        concurrency: { type: 'string', short: 'c' },
        method: { type: 'string', short: 'X' },
        header: { type: 'string', short: 'H', multiple: true },
        data: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  } catch (error) {
    fail((error as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help === true) { process.stdout.write(`${USAGE}\n`); return }
  if (positionals[0] !== 'probe') fail(positionals[0] === undefined ? 'a command is needed' : `unknown command '${positionals[0]}'`)
  const url = positionals[1]
  if (url === undefined) fail('probe needs a URL')
  if (positionals.length > 2) fail(`one URL only, got also '${positionals[2]}'`)
  try {
    const u = new URL(url)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error()
  } catch {
    fail(`'${url}' is not an http(s) URL`)
  }

  const headers: Record<string, string> = {}
  for (const h of values.header ?? []) {
    const colon = h.indexOf(':')
    if (colon < 1) fail(`a header is 'Name: value', got '${h}'`)
    const name = h.slice(0, colon).trim().toLowerCase()
    const value = h.slice(colon + 1).trim()
    try {
      new Headers([[name, value]])
    } catch {
      fail(`'${h}' is not a valid header`)
    }
    headers[name] = value
  }
  const method = (values.method ?? (values.data === undefined ? 'GET' : 'POST')).toUpperCase()
  if (values.data !== undefined && (method === 'GET' || method === 'HEAD')) fail(`a ${method} request cannot carry --data`)
  if (values.data !== undefined && headers['content-type'] === undefined) {
    try { JSON.parse(values.data); headers['content-type'] = 'application/json' } catch { headers['content-type'] = 'text/plain' }
  }

  const controller = new AbortController()
  process.once('SIGINT', () => controller.abort())
  const live = process.stderr.isTTY && values.json !== true
  const summary = await runProbe({
    url,
    requests: numberArg(values.requests, '--requests', 1, 100_000, 100, true)!,
    durationMs: numberArg(values.duration, '--duration', 0.1, 600, 30)! * 1000,
    rate: numberArg(values.rate, '--rate', 0.001, 100_000, undefined),
    concurrency: numberArg(values.concurrency, '--concurrency', 1, 256, 1, true)!,
    method,
    headers,
    body: values.data,
    signal: controller.signal,
  }, live
    ? (p) => {
        process.stderr.write(`\r  sent ${p.sent}  2xx ${p.admitted}  429 ${p.refused}  other ${p.other}  no response ${p.errors}  remaining ${p.remaining ?? '-'}  ${(p.elapsedMs / 1000).toFixed(1)} s   `)
      }
    : undefined)
  if (live) process.stderr.write('\n')
  process.stdout.write(values.json === true ? `${JSON.stringify(summary, null, 2)}\n` : `${formatSummary(summary)}\n`)
  if (summary.stopped === 'interrupted') process.exitCode = 130
  else if (summary.completed === 0 && summary.errors > 0) {
    process.stderr.write(`fastify-gcra: no request got a response: ${summary.firstError ?? 'unknown error'}\n`)
    process.exitCode = 1
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`fastify-gcra: ${(error as Error)?.stack ?? String(error)}\n`)
  process.exit(1)
})
