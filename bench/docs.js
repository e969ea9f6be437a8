// `npm run bench:docs` (and the end of every `npm run bench`): docs/benchmarks.md and its
// SVG charts, from bench/results/latest.json and latest.md. Nothing is measured here.
//   node bench/docs.js           write docs/benchmarks.md and docs/benchmarks-*.svg
//   node bench/docs.js --check   write nothing; exit 1 when those files differ from the results
//
// The tables are the ones the run itself wrote to latest.md (each scenario's markdown() at the
// time of the run), taken when latest.md's header names the same run as latest.json; else each
// scenario's markdown() is called on its result now. The explanations and the charts come from
// latest.json. The output depends on nothing else (no clock, no machine), so regenerating from
// the same results gives the same bytes.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isMain } from './lib/scenario.js'
import { fmt, pct } from './lib/stats.js'
import { LABELS } from './lib/labels.js'

const here = dirname(fileURLToPath(import.meta.url))
export const RESULTS_DIR = join(here, 'results')
export const DOCS_DIR = join(here, '..', 'docs')
export const PAGE = 'benchmarks.md'
/** Every chart file this script writes starts with this; others in docs/ are left alone. */
export const CHART_PREFIX = 'benchmarks-'
export const CHARTS = { overhead: 'benchmarks-overhead.svg', boundary: 'benchmarks-boundary.svg' }

const TITLES = {
  overhead: 'Overhead',
  inprocess: 'In process',
  attack: 'Under attack',
  accuracy: 'Accuracy',
  decision: 'Decision cost',
  memory: 'Memory per key',
  'redis-cost': 'Redis cost per decision',
}
const label = (limiter) => LABELS[limiter] ?? limiter
const anchor = (title) => title.toLowerCase().replace(/[^a-z0-9 -]/g, '').trim().replace(/ +/g, '-')
const plural = (n, one, many) => `${fmt(n)} ${n === 1 ? one : many}`
const identities = (keys) => `${fmt(keys)} identit${keys === 1 ? 'y' : 'ies'}`

// ---------------------------------------------------------------------------------------
// The run's header: the same two lines bench/run.js puts at the top of latest.md

export function runHeader (json) {
  const m = json.machine ?? {}
  const date = typeof json.date === 'string' ? `${json.date.slice(0, 16).replace('T', ' ')} UTC` : 'unknown date'
  return [
    `Command: \`${json.command}\` · ${date} · ${Math.round(json.seconds)} s`,
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, Linux ${m.kernel}${m.redis ? `, Redis ${m.redis}` : ''}; CPU steal over the whole run ${pct(json.steal)}, CPU busy ${pct(json.busy, 0)}`,
  ]
}

/**
 * The scenario sections of latest.md (each starts with its `### ` heading), by scenario
 * name, when latest.md was written by the same run as latest.json; else undefined.
 */
export function sectionsFromMarkdown (json, md) {
  if (typeof md !== 'string') return undefined
  const [first] = runHeader(json)
  if (!md.startsWith(first + '\n')) return undefined
  const names = Object.keys(json.results ?? {})
  const start = md.search(/^### /m)
  if (start === -1) return undefined
  const parts = md.slice(start).split(/^(?=### )/m).map(s => s.trimEnd())
  if (parts.length !== names.length) return undefined
  return Object.fromEntries(names.map((name, i) => [name, parts[i]]))
}

/** Each scenario's section: from latest.md when it belongs to this run, else its markdown() now. */
export async function tableSections (json, md) {
  const fromMd = sectionsFromMarkdown(json, md)
  if (fromMd !== undefined) return fromMd
  const out = {}
  for (const [name, result] of Object.entries(json.results ?? {})) {
    if (result?.error !== undefined) {
      out[name] = `### ${name}\n\nFailed: ${result.error}.`
      continue
    }
    try {
      const module = await import(new URL(`./${name}.js`, import.meta.url).href)
      out[name] = module.markdown(result).trimEnd()
    } catch (err) {
      out[name] = `### ${name}\n\nNo table: this result does not have the shape bench/${name}.js reads now (${err.message}), and bench/results/latest.md is not from the same run. Run \`npm run bench -- --only ${name}\` again.`
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------
// Load modes of the overhead scenario. Runs before the CPU columns kept one connection count
// for the whole scenario (`connections`, `keyModes`); since then each row has its own.

export function overheadModes (result) {
  if (Array.isArray(result.modes)) return result.modes
  if (Array.isArray(result.keyModes)) return result.keyModes.map(keys => ({ connections: result.connections, keys }))
  const seen = new Map()
  for (const r of result.summary ?? []) {
    const mode = { connections: r.connections ?? result.connections, keys: r.keys }
    seen.set(`${mode.connections}/${mode.keys}`, mode)
  }
  return [...seen.values()]
}
const sameMode = (result, row, mode) => (row.connections ?? result.connections) === mode.connections && row.keys === mode.keys
const modeTitle = ({ connections, keys }) => `${connections} connections, ${identities(keys)}`

// ---------------------------------------------------------------------------------------
// What each scenario measures, in plain words (from the scenario files' own descriptions)

const NOTES = {
  overhead: (r) => {
    const modes = overheadModes(r)
    const cpu = (r.summary ?? []).some(row => row.serverCpuUs !== undefined)
    return [
      'What a limiter costs when it refuses nothing. One hello-world JSON route runs behind each limiter, and once with none ("bare Fastify"); autocannon, in a process of its own, sends requests that are all admitted, so the difference to bare Fastify is the price of the check itself.',
      `Load modes: ${modes.map(modeTitle).join('; ')} — one identity is a single hot bucket, many identities spread the load over many buckets (and, with Redis, many keys).`,
      `Every run gets a fresh server; the limiters take turns round by round (${plural(r.rounds, 'round', 'rounds')} of ${r.durationS} s each), so a slow patch of the shared machine hits them all. "× bare Fastify" divides each round's req/s by bare Fastify's req/s in the same round and mode; the table shows the median of the rounds with the slowest and fastest round in brackets. Higher is better; 1.00 would mean no cost at all.`,
      ...(cpu ? ['CPU columns: the app server\'s own CPU time per request, and the private Redis server\'s, which move less with other load on the cores than req/s does.'] : []),
    ].join('\n\n')
  },
  inprocess: (r) => [
    'What each plugin\'s own code adds to a request, without the network. Over HTTP, the overhead scenario\'s CPU per request spreads by several µs from run to run on a shared 2-core machine (a server\'s CPU time per request also moves with how busy it is: a less busy one wakes up more often per request), which is as large as what a limiter adds in memory. Here nothing shares the process\'s CPU time: its own CPU time per request is steady to a few per cent.',
    `Whole requests: one process holds three apps — bare Fastify, @fastify/rate-limit and fastify-gcra, with the overhead scenario's route and limits — and sends each of them whole requests (a real \`http.IncomingMessage\` and \`ServerResponse\`, on a socket that discards what is written) through Fastify's own router: routing, hooks, decorators, the handler, serialisation and the response head with the limiter's fields. The apps take turns in blocks of ${fmt(r.block)} requests, ${plural(r.rounds, 'round', 'rounds')}; what a plugin adds is its block minus bare Fastify's block of the same round. Each mode runs in ${plural(r.processes, 'fresh process', 'fresh processes')}; the tables give the median of the processes, the smallest and largest in brackets. Memory stores take one request at a time; Redis stores (each plugin's default client, one private Redis server) 100 requests at once, so fastify-gcra's store coalesces their decisions as it does under load.`,
    `The route hook alone: one Fastify request and reply, taken from \`app.inject\`, go through the route's limiting hook again and again, in a process of its own per limiter and mode (${plural(r.hookRounds, 'round', 'rounds')}, the limiters taking turns), with the caller's identity rotating over 1 or 10,000 keys: the identity, the decision on the memory store and the fields, and nothing else. µs of CPU per request, lower is better.`,
  ].join('\n\n'),
  attack: (r) => [
    `Whether callers who are already over their limit slow down everyone else. ${r.connections - 1} of ${r.connections} connections come from ${fmt(r.badKeys)} identities that have used up their allowance (10 a minute on /bad) and keep sending; the last connection carries ${fmt(r.goodKeys)} good callers. The same limiter is first measured with good callers only ("calm").`,
    'Read: how many requests per second the server gets through while attacked and what share of them it refuses; how much the good callers\' p99 latency grows over calm; and, for the Redis limiters, how many script calls and Redis commands a refused request costs — the fewer, the less an attacker can load Redis.',
    ...(r.badRate === undefined ? [] : [`In the first table each bad connection sends its next request as soon as it is answered, so a limiter that refuses faster is sent more attack traffic (compare the attacked req/s). The second table holds the attack at ${fmt(r.badRate)} bad requests per second for every limiter (autocannon's overall rate), so the good callers' latency is compared under the same attack.`]),
  ].join('\n\n'),
  accuracy: (r) => [
    `Whether the limit holds exactly when several servers share one Redis. ${r.processes} server processes with ${r.connections} connections each hammer one identity limited to '${r.rate}/second', burst ${r.burst}, for ${r.durationS} s. Between the first and the last admitted request, that limit allows at most burst + ⌊rate × elapsed seconds⌋ requests (the GCRA bound): "admitted / bound" of 100 % is exact, above 100 % is more than the limit. "Most admitted in any 1 s" shows how bunched the admissions were. fastify-gcra takes each decision's time from Redis; @fastify/rate-limit counts in fixed windows of ${r.rate} per second, with no burst setting.`,
    'The window-boundary test shows what a fixed window lets through: one request opens the window, then 150 requests at once at 900 ms, and 150 more at 1,050 ms, just after that window has ended. A fixed window admits what was left of the old window and then a whole new one, within about a fifth of a second; GCRA admits its burst and then only its rate.',
  ].join('\n\n'),
  decision: (r) => `The CPU cost of one decision inside the process, without any network: the pure GCRA arithmetic, the memory store with one key and with ${fmt(r.keys)} keys, the store at its cap (every new key evicts an old one), and hashing the caller's identity. Each tinybench task makes a batch of ${fmt(r.batch)} decisions, so the timer's own cost is spread over the batch; nanoseconds per decision, lower is better.`,
  memory: (r) => `How much memory each tracked caller costs, with ${fmt(r.keys)} keys: bytes per key in the memory store (V8 heap after a full garbage collection) and in Redis (\`MEMORY USAGE\` of sample keys, and the \`INFO memory\` growth divided by the keys); and that the memory store stays at its cap (\`maxKeys\`) when more identities come than it may hold.`,
  'redis-cost': (r) => [
    `The work each decision costs the Redis server itself, which sets what one Redis core can serve: microseconds per script call from \`INFO commandstats\`, and the Redis process's CPU time per decision from \`INFO cpu\`, with decisions sent by one auto-pipelined client, ${fmt(r.window)} in flight. Lower µs and more decisions per core are better.`,
    ...(Array.isArray(r.batches) && r.batches.length > 0 ? ['The second table: fastify-gcra\'s store sends the decisions asked in one turn of the event loop in one script call; N decisions of distinct callers per call, and what each decision then costs Redis.'] : []),
  ].join('\n\n'),
}

// ---------------------------------------------------------------------------------------
// SVG: plain text, drawn here

const FONT = 'DejaVu Sans, Verdana, Helvetica, Arial, sans-serif'
const INK = '#222222'
const MUTED = '#555555'
const GRID = '#dddddd'

export const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const num = (x) => String(Math.round(x * 10) / 10)
const attrs = (a) => Object.entries(a).filter(([, v]) => v !== undefined).map(([k, v]) => ` ${k}="${esc(typeof v === 'number' ? num(v) : v)}"`).join('')
const el = (name, a, body) => body === undefined ? `<${name}${attrs(a)}/>` : `<${name}${attrs(a)}>${body}</${name}>`
const text = (x, y, s, a = {}) => el('text', { x, y, ...a }, esc(s))
const line = (x1, y1, x2, y2, a = {}) => el('line', { x1, y1, x2, y2, ...a })
const rect = (x, y, width, height, a = {}) => el('rect', { x, y, width, height, ...a })

function svgDocument (width, height, title, desc, body) {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${num(height)}" viewBox="0 0 ${width} ${num(height)}" font-family="${FONT}" font-size="13" fill="${INK}" role="img" aria-labelledby="title desc">`,
    el('title', { id: 'title' }, esc(title)),
    el('desc', { id: 'desc' }, esc(desc)),
    rect(0, 0, width, height, { fill: '#ffffff' }),
    ...body,
    '</svg>',
    '',
  ].join('\n')
}

/** Round numbers for an axis: 0 to at least `max`, about `count` steps. */
function ticks (max, count) {
  const raw = max / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map(f => f * mag).find(s => s >= raw)
  const top = Math.ceil(max / step - 1e-9) * step
  const out = []
  for (let v = 0; v <= top + step / 1e6; v += step) out.push(Math.round(v / step) * step)
  return { step, top, values: out }
}

// Mode colours: distinguishable in colour-blind vision and in greyscale (light → dark)
const MODE_COLOURS = ['#9ecae1', '#3182bd', '#08306b']
// pairs: fastify-gcra beside its @fastify/rate-limit counterpart
const OVERHEAD_ORDER = ['frl-memory', 'gcra-memory', 'frl-redis', 'gcra-redis', 'frl-redis-pipe', 'gcra-redis-pipe']

/** (b) req/s × bare Fastify, per limiter and load mode: horizontal bars, median with min–max whiskers. */
export function overheadChart (result) {
  const modes = overheadModes(result)
  const rows = result.summary ?? []
  const limiters = [...OVERHEAD_ORDER, ...new Set(rows.map(r => r.limiter))]
    .filter((l, i, all) => l !== 'bare' && all.indexOf(l) === i && rows.some(r => r.limiter === l))
  const at = (limiter, mode) => rows.find(r => r.limiter === limiter && sameMode(result, r, mode))?.vsBare
  const values = limiters.flatMap(l => modes.map(m => at(l, m))).filter(s => s !== undefined && Number.isFinite(s.median))
  if (modes.length === 0 || values.length === 0) return undefined

  const W = 700
  const left = 200
  const right = W - 78 // then a column of the medians
  const barH = 14
  const barGap = 3
  const groupPad = 11
  const groupH = modes.length * barH + (modes.length - 1) * barGap + 2 * groupPad
  // one legend line per load mode: three titles do not fit side by side at 700 px
  const legendRows = modes.length
  const top = 96 + legendRows * 20
  const plotH = limiters.length * groupH
  const H = top + plotH + 62
  const xMax = Math.max(1, ...values.map(s => Number.isFinite(s.max) ? s.max : s.median))
  const axis = ticks(xMax, 5)
  const x = (v) => left + (right - left) * v / axis.top
  const rounds = Math.max(...values.map(s => s.n))

  const out = []
  out.push(text(20, 30, 'Throughput with each limiter, relative to bare Fastify', { 'font-size': 18, 'font-weight': 'bold' }))
  out.push(text(20, 52, 'req/s ÷ bare Fastify\'s req/s in the same round and load mode; every request admitted', { fill: MUTED }))
  out.push(text(20, 70, rounds > 1 ? `Bar: median of ${rounds} rounds; whisker: slowest to fastest round. Longer is faster.` : 'One round. Longer is faster.', { fill: MUTED }))
  // legend
  modes.forEach((m, i) => {
    const lx = 20
    const ly = 92 + i * 20
    out.push(rect(lx, ly - 11, 14, 14, { fill: MODE_COLOURS[i % MODE_COLOURS.length], stroke: '#333333', 'stroke-width': 0.5 }))
    out.push(text(lx + 20, ly, modeTitle(m)))
  })
  // grid and x axis
  for (const v of axis.values) {
    out.push(line(x(v), top, x(v), top + plotH, { stroke: GRID }))
    out.push(text(x(v), top + plotH + 18, v === 0 ? '0' : `${Number(v.toFixed(2))}×`, { 'text-anchor': 'middle', 'font-size': 12, fill: MUTED }))
  }
  out.push(line(left, top + plotH, right, top + plotH, { stroke: '#888888' }))
  out.push(line(x(1), top - 6, x(1), top + plotH, { stroke: INK, 'stroke-dasharray': '5 3', 'stroke-width': 1.2 }))
  out.push(text(x(1), top - 10, 'bare Fastify = 1×', { 'text-anchor': x(1) > right - 60 ? 'end' : 'middle', 'font-size': 12 }))
  out.push(text(W - 14, top - 10, 'median', { 'text-anchor': 'end', 'font-size': 12, fill: MUTED }))
  out.push(text((left + right) / 2, top + plotH + 40, 'req/s relative to bare Fastify (1× = no cost)', { 'text-anchor': 'middle' }))
  // groups
  limiters.forEach((limiter, g) => {
    const gy = top + g * groupH
    if (g > 0) out.push(line(12, gy, W - 12, gy, { stroke: g % 2 === 0 ? '#bbbbbb' : '#eeeeee' }))
    const [lib, ...rest] = label(limiter).split(', ')
    const cy = gy + groupH / 2
    out.push(text(left - 10, cy - 3, lib, { 'text-anchor': 'end', 'font-weight': 'bold' }))
    if (rest.length > 0) out.push(text(left - 10, cy + 13, rest.join(', '), { 'text-anchor': 'end', 'font-size': 12, fill: MUTED }))
    modes.forEach((mode, i) => {
      const s = at(limiter, mode)
      if (s === undefined || !Number.isFinite(s.median)) return
      const by = gy + groupPad + i * (barH + barGap)
      const colour = MODE_COLOURS[i % MODE_COLOURS.length]
      out.push(rect(left, by, x(s.median) - left, barH, { fill: colour, stroke: '#333333', 'stroke-width': 0.5 }))
      if (s.n > 1 && Number.isFinite(s.min) && Number.isFinite(s.max)) {
        const wy = by + barH / 2
        out.push(line(x(s.min), wy, x(s.max), wy, { stroke: INK, 'stroke-width': 1.2 }))
        out.push(line(x(s.min), wy - 4, x(s.min), wy + 4, { stroke: INK, 'stroke-width': 1.2 }))
        out.push(line(x(s.max), wy - 4, x(s.max), wy + 4, { stroke: INK, 'stroke-width': 1.2 }))
      }
      out.push(text(W - 14, by + barH - 3, `${s.median.toFixed(2)}×`, { 'text-anchor': 'end', 'font-size': 12 }))
    })
  })
  const desc = limiters.map(l => `${label(l)}: ${modes.map(m => { const s = at(l, m); return `${modeTitle(m)} ${s ? s.median.toFixed(2) : '–'}×` }).join(', ')}`).join('; ')
  return svgDocument(W, H, 'Throughput with each limiter, relative to bare Fastify', desc, out)
}

/**
 * (a) The accuracy scenario's window-boundary test, as recorded: admitted requests so far
 * against time since the request that opened @fastify/rate-limit's window.
 */
export function boundaryChart (result) {
  const edges = (result.edges ?? []).filter(e => [e.first, e.before, e.after].every(Number.isFinite))
  if (edges.length === 0) return undefined
  // the volleys' times, as bench/accuracy.js sends them
  const T1 = 900
  const T2 = 1050
  const WINDOW = 1000
  const rate = result.rate ?? 100
  const W = 700
  const left = 64
  const right = W - 24
  const top = 104
  const plotH = 250
  const bottom = top + plotH
  const legendTop = bottom + 62
  const H = legendTop + (edges.length - 1) * 22 + 16
  // the first 700 ms hold nothing but the opening request: the axis starts at 700 ms
  const xMinMs = 700
  const xMaxMs = 1200
  const x = (ms) => left + (right - left) * (Math.max(ms, xMinMs) - xMinMs) / (xMaxMs - xMinMs)
  const totals = edges.map(e => e.first + e.before + e.after)
  const yAxis = ticks(Math.max(rate, ...totals) * 1.15, 5)
  const y = (n) => bottom - plotH * n / yAxis.top
  const style = (limiter) => limiter.startsWith('frl-')
    ? { stroke: '#d95f02', 'stroke-width': 3 }
    : limiter.endsWith('-pipe')
      ? { stroke: '#7570b3', 'stroke-width': 2.5, 'stroke-dasharray': '7 4' }
      : { stroke: '#1b9e77', 'stroke-width': 3 }

  const out = []
  out.push(text(20, 30, 'Admitted requests around a fixed window\'s boundary', { 'font-size': 18, 'font-weight': 'bold' }))
  out.push(text(20, 52, `Limit '${rate}/second' (fastify-gcra: GCRA, burst ${result.burst}; @fastify/rate-limit: 1 s fixed window of ${rate}).`, { fill: MUTED }))
  out.push(text(20, 70, `Recorded: 1 request at 0 ms, 150 at once at ${fmt(T1)} ms, 150 more at ${fmt(T2)} ms.`, { fill: MUTED }))
  // the two fixed windows
  out.push(rect(x(xMinMs), top, x(WINDOW) - x(xMinMs), plotH, { fill: '#f4f4f4' }))
  out.push(rect(x(WINDOW), top, x(xMaxMs) - x(WINDOW), plotH, { fill: '#e6ecf5' }))
  out.push(text(x(xMinMs) + 8, top + 18, '← fixed window 1, opened at 0 ms', { fill: MUTED, 'font-size': 12 }))
  out.push(text((x(WINDOW) + x(xMaxMs)) / 2, top + 18, 'window 2', { 'text-anchor': 'middle', fill: MUTED, 'font-size': 12 }))
  // grid and axes
  for (const v of yAxis.values) {
    if (v > 0) out.push(line(left, y(v), right, y(v), { stroke: v === rate ? '#999999' : GRID, 'stroke-dasharray': v === rate ? '2 3' : undefined }))
    out.push(text(left - 8, y(v) + 4, fmt(v), { 'text-anchor': 'end', 'font-size': 12, fill: MUTED }))
  }
  if (!yAxis.values.includes(rate)) out.push(line(left, y(rate), right, y(rate), { stroke: '#999999', 'stroke-dasharray': '2 3' }))
  out.push(text(left + 8, y(rate) - 6, `${rate}: one second's allowance`, { 'font-size': 12, fill: MUTED }))
  for (let ms = xMinMs; ms <= xMaxMs; ms += 50) {
    out.push(line(x(ms), bottom, x(ms), bottom + 5, { stroke: '#888888' }))
    if (ms % 100 === 0) out.push(text(x(ms), bottom + 19, fmt(ms), { 'text-anchor': 'middle', 'font-size': 12, fill: MUTED }))
  }
  out.push(line(left, bottom, right, bottom, { stroke: '#888888' }))
  out.push(line(left, top, left, bottom, { stroke: '#888888' }))
  out.push(text((left + right) / 2, bottom + 40, 'time since the first request (ms)', { 'text-anchor': 'middle' }))
  out.push(text(0, 0, 'admitted so far', { 'text-anchor': 'middle', transform: `translate(${num(18)} ${num((top + bottom) / 2)}) rotate(-90)` }))
  // the boundary and the volleys
  out.push(line(x(WINDOW), top - 4, x(WINDOW), bottom, { stroke: INK, 'stroke-width': 1.5, 'stroke-dasharray': '6 3' }))
  out.push(text(x(WINDOW), top - 9, 'window boundary', { 'text-anchor': 'middle', 'font-size': 12 }))
  for (const [ms, what, anchorAt] of [[T1, '150 sent', 'end'], [T2, '150 more', 'start']]) {
    out.push(line(x(ms), bottom, x(ms), top + 26, { stroke: '#777777', 'stroke-dasharray': '1 3' }))
    out.push(text(x(ms) + (anchorAt === 'end' ? -4 : 4), top + 38, what, { 'text-anchor': anchorAt, 'font-size': 12, fill: MUTED }))
  }
  // the steps: drawn at the times the volleys were sent; a line ends when the last answer came
  const ordered = [...edges].sort((a, b) => (a.limiter.startsWith('frl-') ? 1 : 0) - (b.limiter.startsWith('frl-') ? 1 : 0))
  for (const e of ordered) {
    const end = Math.min(xMaxMs, Math.max(T2 + 10, T1 + (Number.isFinite(e.spanMs) ? e.spanMs : 150)))
    const a = e.first
    const b = a + e.before
    const c = b + e.after
    const pts = [[0, 0], [0, a], [T1, a], [T1, b], [T2, b], [T2, c], [end, c]]
    out.push(el('polyline', { points: pts.map(([ms, n]) => `${num(x(ms))},${num(y(n))}`).join(' '), fill: 'none', 'stroke-linejoin': 'round', ...style(e.limiter) }))
    for (const [ms, n] of [[T1, b], [T2, c]]) out.push(el('circle', { cx: x(ms), cy: y(n), r: 3.5, fill: style(e.limiter).stroke }))
  }
  // what each volley added, beside the step: the fixed window's (left of its steps) and the
  // first GCRA limiter's (right of its steps; the others' numbers are in the legend)
  const fixed = edges.find(e => e.limiter.startsWith('frl-'))
  const gcra = edges.find(e => !e.limiter.startsWith('frl-'))
  if (fixed !== undefined) {
    out.push(text(x(T1) - 6, y(fixed.first + fixed.before / 2) + 4, `+${fixed.before}`, { 'text-anchor': 'end', 'font-weight': 'bold', fill: style(fixed.limiter).stroke }))
    out.push(text(x(T2) - 6, y(fixed.first + fixed.before + fixed.after / 2) + 4, `+${fixed.after}`, { 'text-anchor': 'end', 'font-weight': 'bold', fill: style(fixed.limiter).stroke }))
  }
  if (gcra !== undefined) {
    out.push(text(x(T1) + 6, y(gcra.first + gcra.before) - 8, `+${gcra.before}`, { 'font-weight': 'bold', fill: style(gcra.limiter).stroke }))
    out.push(text(x(T2) + 6, y(gcra.first + gcra.before + gcra.after) - 8, `+${gcra.after}`, { 'font-weight': 'bold', fill: style(gcra.limiter).stroke }))
  }
  // legend, with the recorded numbers
  edges.forEach((e, i) => {
    const ly = legendTop + i * 22
    const s = style(e.limiter)
    out.push(line(20, ly - 4, 56, ly - 4, { ...s }))
    const kind = e.limiter.startsWith('frl-') ? 'fixed window' : 'GCRA'
    out.push(text(64, ly, `${label(e.limiter)} (${kind}): ${e.before} + ${e.after} admitted${Number.isFinite(e.spanMs) ? ` within ${fmt(e.spanMs)} ms` : ''}`))
  })
  const desc = edges.map(e => `${label(e.limiter)}: ${e.first} at 0 ms, ${e.before} at ${T1} ms, ${e.after} at ${T2} ms`).join('; ')
  return svgDocument(W, H, 'Admitted requests around a fixed window\'s boundary', desc, out)
}

// ---------------------------------------------------------------------------------------
// The page

const CAPTIONS = {
  overhead: (r) => `*Chart: recorded — \`results.overhead.summary[].vsBare\` of this run: for each round, the limiter's req/s divided by bare Fastify's req/s in the same round and load mode; the bar is the median over ${plural(r.rounds, 'round', 'rounds')}, the whisker runs from the slowest to the fastest round. The exact numbers are in the "× bare Fastify" column below.*`,
  boundary: () => '*Chart: recorded — `results.accuracy.edges` of this run: how many of each volley\'s 150 requests were admitted. The steps are drawn at the times the volleys were sent (each volley\'s answers take a few tens of milliseconds to come back) and each line ends when the last answer came; "within" is from the first volley\'s start to the last answer. Not a model. Per-request times are not kept in the results, so the chart shows the volleys, not single requests.*',
}

/** The page and its charts from one run's results: `{ markdown, charts: { file: svg } }`. */
export async function renderDocs (json, md) {
  const results = json.results ?? {}
  const names = Object.keys(results)
  const sections = await tableSections(json, md)
  const charts = {}
  const lines = [
    '# Benchmarks',
    '',
    '<!-- Generated by bench/docs.js (`npm run bench:docs`, and at the end of every `npm run bench`) from bench/results/latest.json and latest.md. Edits here are overwritten. -->',
    '',
    runHeader(json)[0],
    '',
    runHeader(json)[1],
    '',
  ]
  if (json.quick) lines.push('> This is a `--quick` run: fewer rounds and shorter loads, for a quick look, not for comparisons.', '')
  lines.push(
    'Every scenario runs in a child process of its own, one after the other, on the machine above; the limiters are the memory and the Redis stores of fastify-gcra and of @fastify/rate-limit, with a private redis-server. `npm run bench` measures again (about 17 minutes; `-- --quick` for a short run, `-- --only overhead,accuracy` for some scenarios) and writes bench/results/latest.json, latest.md and this page; `npm run bench:docs` rebuilds this page and its charts from the stored results without measuring.',
    '',
  )
  if (names.length > 0) {
    lines.push(names.map(n => `[${TITLES[n] ?? n}](#${anchor(TITLES[n] ?? n)})`).join(' · '), '')
  }
  for (const name of names) {
    const result = results[name]
    const title = TITLES[name] ?? name
    lines.push(`## ${title}`, '')
    if (result?.error === undefined && NOTES[name] !== undefined) {
      try {
        lines.push(NOTES[name](result), '')
      } catch { /* a result of another shape: the table says what there is */ }
    }
    if (name === 'overhead' && result?.error === undefined) {
      const svg = overheadChart(result)
      if (svg !== undefined) {
        charts[CHARTS.overhead] = svg
        lines.push(`![Throughput with each limiter relative to bare Fastify, per load mode](${CHARTS.overhead})`, '', CAPTIONS.overhead(result), '')
      }
    }
    if (name === 'accuracy' && result?.error === undefined) {
      const svg = boundaryChart(result)
      if (svg !== undefined) {
        charts[CHARTS.boundary] = svg
        lines.push(`![Admitted requests around a fixed window's boundary: fastify-gcra and @fastify/rate-limit](${CHARTS.boundary})`, '', CAPTIONS.boundary(result), '')
      }
    }
    lines.push(sections[name] ?? `### ${name}\n\nNo table.`, '')
  }
  return { markdown: lines.join('\n'), charts }
}

/** latest.json (required) and latest.md (when there is one) from a results folder. */
export function readResults (resultsDir = RESULTS_DIR) {
  const json = JSON.parse(readFileSync(join(resultsDir, 'latest.json'), 'utf8'))
  const mdPath = join(resultsDir, 'latest.md')
  const md = existsSync(mdPath) ? readFileSync(mdPath, 'utf8') : undefined
  return { json, md }
}

/** Every file the results make, by path: the page and its charts. */
export async function docsFiles ({ resultsDir = RESULTS_DIR, docsDir = DOCS_DIR } = {}) {
  const { json, md } = readResults(resultsDir)
  const { markdown, charts } = await renderDocs(json, md)
  return { [join(docsDir, PAGE)]: markdown, ...Object.fromEntries(Object.entries(charts).map(([f, svg]) => [join(docsDir, f), svg])) }
}

/** Chart files in docs/ that this script wrote once and the current results no longer make. */
function staleCharts (docsDir, files) {
  if (!existsSync(docsDir)) return []
  return readdirSync(docsDir).filter(f => f.startsWith(CHART_PREFIX) && f.endsWith('.svg')).map(f => join(docsDir, f)).filter(p => !(p in files))
}

/** Write the page and its charts; returns the paths written. */
export async function writeDocs (options = {}) {
  const docsDir = options.docsDir ?? DOCS_DIR
  const files = await docsFiles(options)
  mkdirSync(docsDir, { recursive: true })
  for (const [path, content] of Object.entries(files)) writeFileSync(path, content)
  for (const path of staleCharts(docsDir, files)) rmSync(path)
  return Object.keys(files)
}

/** The paths that are missing, differ or should not be there; empty when the docs are up to date. */
export async function checkDocs (options = {}) {
  const docsDir = options.docsDir ?? DOCS_DIR
  const files = await docsFiles(options)
  const stale = Object.entries(files).filter(([path, content]) => !existsSync(path) || readFileSync(path, 'utf8') !== content).map(([path]) => path)
  return [...stale, ...staleCharts(docsDir, files)]
}

if (isMain(import.meta.url)) {
  const root = join(here, '..')
  const rel = (p) => p.startsWith(root) ? p.slice(root.length + 1) : p
  if (process.argv.includes('--check')) {
    const stale = await checkDocs()
    if (stale.length > 0) {
      process.stderr.write(`out of date with bench/results/latest.json: ${stale.map(rel).join(', ')}; run npm run bench:docs\n`)
      process.exit(1)
    }
    process.stderr.write('docs/benchmarks.md and its charts are up to date\n')
  } else {
    const written = await writeDocs()
    process.stderr.write(`wrote ${written.map(rel).join(', ')}\n`)
  }
}
