// Scenario 4, decision cost: the pure GCRA decision and the memory store, in ns per
// decision (tinybench; each task runs a batch of decisions, so the timer's own cost is
// spread over the batch), over 1 key and over 1 M keys.
import { Bench } from 'tinybench'
import { decide, incrementUs, toBucket } from '../dist/esm/gcra/math.js'
import { hashIdentity, identityHasher } from '../dist/esm/identity/hash.js'
import { MemoryStore } from '../dist/esm/stores/memory.js'
import { main } from './lib/scenario.js'
import { fmt } from './lib/stats.js'

const BATCH = 1000

export async function run ({ quick }) {
  const manyKeys = 1_000_000
  const bucket = toBucket(1_000_000, 1000, 1_000_000, 1)
  const capacities = [bucket.capacityUs]
  const increments = [incrementUs(1, bucket.intervalUs)]
  const out = [0]
  const baseUs = Date.now() * 1000
  const stored = [baseUs]

  // the memory store on a clock that advances 1 µs a call: every decision admits and writes
  let clockUs = baseUs
  const clock = () => ++clockUs
  const one = new MemoryStore({ maxKeys: manyKeys + 10, clock })
  const oneKey = ['gcra:{AAAAAAAAAAAAAAAAAAAAAA}:0123456789ab']
  const many = new MemoryStore({ maxKeys: manyKeys + 10, clock })
  const keys = Array.from({ length: manyKeys }, (_, i) => [`gcra:{${hashIdentity(`key-${i}`)}}:0123456789ab`])
  for (const k of keys) many.decide(k, capacities, increments, true)
  // a full store: every write of a new key evicts
  const full = new MemoryStore({ maxKeys: manyKeys / 2, clock })
  let fresh = 0
  let cursor = 0
  const identities = Array.from({ length: 1024 }, (_, i) => `api-key-${i}-${'x'.repeat(24)}`)

  const bench = new Bench({ time: quick ? 300 : 1500, warmup: true, warmupTime: quick ? 100 : 300 })
  let sink = 0
  bench
    .add('pure decide(), 1 bucket', () => {
      for (let i = 0; i < BATCH; i++) {
        stored[0] = baseUs + (i & 7)
        if (decide(stored, capacities, increments, baseUs + 8, out, true)) sink++
      }
    })
    .add('memory store, 1 key', () => {
      for (let i = 0; i < BATCH; i++) if (one.decide(oneKey, capacities, increments, true).allowed) sink++
    })
    .add('memory store, 1 M keys (round robin)', () => {
      for (let i = 0; i < BATCH; i++) {
        if (many.decide(keys[cursor], capacities, increments, true).allowed) sink++
        cursor = cursor + 1 === manyKeys ? 0 : cursor + 1
      }
    })
    .add(`memory store full (cap ${manyKeys / 2}), a new key each time`, () => {
      for (let i = 0; i < BATCH; i++) if (full.decide([`new-${fresh++}`], capacities, increments, true).allowed) sink++
    })
    .add('identity hash (SHA-256, 128 bits, base64url)', () => {
      for (let i = 0; i < BATCH; i++) sink += hashIdentity(identities[i & 1023]).length
    })
    .add('identity hash as the plugin calls it (1,024 callers, remembered)', () => {
      for (let i = 0; i < BATCH; i++) sink += cachedHash(identities[i & 1023]).length
    })
  const cachedHash = identityHasher(undefined)
  await bench.run()
  const tasks = bench.tasks.map(t => ({
    name: t.name,
    nsPerDecision: t.result.latency.p50 * 1e6 / BATCH,
    nsMean: t.result.latency.mean * 1e6 / BATCH,
    rme: t.result.latency.rme,
    samples: t.result.latency.samplesCount ?? t.result.latency.samples?.length,
  }))
  for (const t of tasks) process.stderr.write(`decision ${t.name}: ${t.nsPerDecision.toFixed(1)} ns\n`)
  return { name: 'decision', quick, batch: BATCH, keys: manyKeys, storeSize: many.size, fullSize: full.size, fullEvictedLive: full.evictedLive, tasks, sink }
}

export function markdown (result) {
  const lines = [`### Decision cost (tinybench, batches of ${fmt(result.batch)}; median of batches)`, '', '| what | ns per decision (median) | mean | ± % |', '|---|---:|---:|---:|']
  for (const t of result.tasks) lines.push(`| ${t.name} | ${fmt(t.nsPerDecision, 1)} | ${fmt(t.nsMean, 1)} | ${fmt(t.rme, 1)} |`)
  lines.push('', `Store keys of the shape the plugin writes (\`gcra:{<22-char hash>}:<policy id>\`). The identity hash is paid once per request on top of the decision; the plugin remembers the hashes of the last 10,000 identities it saw.`)
  return lines.join('\n')
}

await main(import.meta.url, run)
