// One autocannon run, in a process of its own; prints its result as JSON on stdout.
// argv[2]: { url, duration? (s), amount?, connections, keys?, keyPrefix?, keyOffset?, overallRate? (req/s over all connections) }
// With `keys`, requests rotate an x-api-key header over that many identities.
import autocannon from 'autocannon'

const spec = JSON.parse(process.argv[2])
const keys = spec.keys ?? 0
const prefix = spec.keyPrefix ?? 'key-'
const offset = spec.keyOffset ?? 0

const requests = keys > 0
  ? Array.from({ length: keys }, (_, i) => ({ method: 'GET', headers: { 'x-api-key': `${prefix}${offset + i}` } }))
  : undefined

// autocannon's histogram keeps whole milliseconds; loopback latencies need µs
const MAX_SAMPLES = 8_000_000
const latencies = new Float64Array(MAX_SAMPLES)
let samples = 0

const instance = autocannon({
  url: spec.url,
  connections: spec.connections ?? 10,
  pipelining: 1,
  ...(spec.amount === undefined ? { duration: spec.duration ?? 5 } : { amount: spec.amount }),
  ...(requests === undefined ? {} : { requests }),
  // a fixed rate, whatever the answers' speed (open loop); by default each connection sends again once answered
  ...(spec.overallRate === undefined ? {} : { overallRate: spec.overallRate }),
  timeout: 10,
}, (error, result) => {
  if (error) {
    console.error(error)
    process.exit(1)
  }
  const sorted = latencies.subarray(0, samples).sort()
  const at = (q) => samples === 0 ? NaN : sorted[Math.min(samples - 1, Math.floor(q * samples))]
  const statuses = {}
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) statuses[code] = count
  const total = result['2xx'] + result.non2xx
  process.stdout.write(JSON.stringify({
    durationS: result.duration,
    total,
    ok: result['2xx'],
    non2xx: result.non2xx,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    rps: total / result.duration,
    okRps: result['2xx'] / result.duration,
    // latencies of 2xx responses, ms
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    samples,
  }))
})

instance.on('response', (client, statusCode, bytes, responseTime) => {
  if (statusCode >= 200 && statusCode < 300 && samples < MAX_SAMPLES) latencies[samples++] = responseTime
})
