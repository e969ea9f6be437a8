// `npm run bench [-- --quick] [-- --only overhead,attack] [-- --profile]`: every scenario in a
// child process of its own, one after the other; writes bench/results/latest.{md,json} and the
// benchmarks page, or, for a run of some scenarios (--only), bench/results/only.{md,json}, so
// that the last full run stays what the docs show.
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, release, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cpuBetween, pct, readCpu } from './lib/stats.js'

const here = dirname(fileURLToPath(import.meta.url))
export const SCENARIOS = ['overhead', 'inprocess', 'attack', 'accuracy', 'decision', 'memory', 'redis-cost']
// scenarios that measure the heap need a collector they can call
const NODE_ARGS = { decision: ['--expose-gc'], memory: ['--expose-gc', '--max-old-space-size=4096'] }

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const profile = args.includes('--profile')
const onlyAt = args.indexOf('--only')
const only = onlyAt === -1 ? SCENARIOS : args[onlyAt + 1].split(',')
const stem = onlyAt === -1 ? 'latest' : 'only'
for (const name of only) if (!SCENARIOS.includes(name)) throw new Error(`unknown scenario '${name}'; one of ${SCENARIOS.join(', ')}`)

const resultsDir = join(here, 'results')
mkdirSync(resultsDir, { recursive: true })

let current
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { current?.kill('SIGTERM'); setTimeout(() => process.exit(130), 3000).unref() })
}

/** One scenario in its own process, bounded in time. */
async function runScenario (name) {
  const out = join(resultsDir, `${name}.json.tmp`)
  rmSync(out, { force: true })
  const limitMs = (quick ? 3 : 15) * 60_000
  const child = spawn(process.execPath, [...(NODE_ARGS[name] ?? []), join(here, `${name}.js`), '--out', out, ...(quick ? ['--quick'] : []), ...(profile ? ['--profile'] : [])], { stdio: ['ignore', 'inherit', 'inherit'] })
  current = child
  const timer = setTimeout(() => child.kill('SIGTERM'), limitMs)
  const code = await new Promise(resolve => child.once('exit', (c, s) => resolve(c ?? s)))
  clearTimeout(timer)
  current = undefined
  if (code !== 0) return { name, error: `exited with ${code}` }
  const result = JSON.parse(readFileSync(out, 'utf8'))
  rmSync(out, { force: true })
  return result
}

const command = `npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`
const started = new Date()
const cpuBefore = readCpu()
const results = {}
for (const name of only) {
  process.stderr.write(`\n== ${name} ==\n`)
  results[name] = await runScenario(name)
  process.stderr.write(`== ${name}: ${results[name].error ?? `${results[name].seconds.toFixed(0)} s`} ==\n`)
}
const cpu = cpuBetween(cpuBefore, readCpu())
const seconds = (Date.now() - started.getTime()) / 1000
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? 'unknown',
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  kernel: release(),
  redis: results.memory?.redisVersion ?? results['redis-cost']?.redisVersion,
}

const json = { command, quick, date: started.toISOString(), seconds, machine, steal: cpu.steal, busy: cpu.busy, results }
writeFileSync(join(resultsDir, `${stem}.json`), JSON.stringify(json, null, 2) + '\n')

const sections = []
for (const name of only) {
  const result = results[name]
  if (result.error !== undefined) {
    sections.push(`### ${name}\n\nFailed: ${result.error}.`)
    continue
  }
  const module = await import(`./${name}.js`)
  sections.push(module.markdown(result))
}
const md = [
  `Command: \`${command}\` · ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC · ${Math.round(seconds)} s`,
  `Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}, Linux ${machine.kernel}${machine.redis ? `, Redis ${machine.redis}` : ''}; CPU steal over the whole run ${pct(cpu.steal)}, CPU busy ${pct(cpu.busy, 0)}`,
  '',
  ...sections.flatMap(s => [s, '']),
].join('\n')
writeFileSync(join(resultsDir, `${stem}.md`), md)
process.stderr.write(`\nwrote bench/results/${stem}.md and ${stem}.json (${Math.round(seconds)} s)\n`)
if (stem !== 'latest') process.exit(Object.values(results).some(r => r.error !== undefined) ? 1 : 0)
// docs/benchmarks.md and its charts follow every run (bench/docs.js; `npm run bench:docs` alone)
try {
  await (await import('./docs.js')).writeDocs()
  process.stderr.write('wrote docs/benchmarks.md and its charts\n')
} catch (err) {
  process.stderr.write(`docs/benchmarks.md not written: ${err.stack ?? err}\n`)
}
process.exit(Object.values(results).some(r => r.error !== undefined) ? 1 : 0)
