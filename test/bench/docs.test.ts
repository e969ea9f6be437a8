// docs/benchmarks.md and its SVG charts (bench/docs.js): a small fixture run becomes a page
// with every table and well-formed SVG, and the committed page is what the stored results make.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
// @ts-expect-error plain JavaScript without declarations
import { boundaryChart, CHART_PREFIX, CHARTS, checkDocs, DOCS_DIR, esc, overheadChart, PAGE, readResults, renderDocs, runHeader } from '../../bench/docs.js'
// @ts-expect-error plain JavaScript without declarations
import { LIMITERS, summarise } from '../../bench/overhead.js'

type Json = Record<string, any>

/** Problems that keep `xml` from being well-formed (one root, balanced tags, quoted attributes, escaped text); empty when none. */
function xmlProblems (xml: string): string[] {
  const problems: string[] = []
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '').replace(/<!--[\s\S]*?-->/g, '')
  const entity = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/
  const checkText = (t: string, where: string): void => {
    if (t.includes('<') || t.includes('>')) problems.push(`unescaped < or > in ${where}: ${t.slice(0, 40)}`)
    if (entity.test(t)) problems.push(`bare & in ${where}: ${t.slice(0, 40)}`)
  }
  const stack: string[] = []
  let roots = 0
  let last = 0
  const tags = /<[^<>]*>/g
  for (let m = tags.exec(body); m !== null; m = tags.exec(body)) {
    const between = body.slice(last, m.index)
    if (stack.length === 0 && between.trim() !== '') problems.push(`text outside the root: ${between.trim().slice(0, 40)}`)
    checkText(between, 'text')
    last = tags.lastIndex
    const tag = m[0]
    if (tag.startsWith('</')) {
      const name = tag.slice(2, -1).trim()
      const open = stack.pop()
      if (open !== name) problems.push(`</${name}> closes <${open ?? 'nothing'}>`)
      continue
    }
    const parts = /^<([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*="[^"]*")*)\s*(\/?)>$/.exec(tag)
    if (parts === null) {
      problems.push(`malformed tag ${tag.slice(0, 60)}`)
      continue
    }
    const names = [...(parts[2] ?? '').matchAll(/([\w:.-]+)="([^"]*)"/g)]
    for (const [, attr, value] of names) checkText(value ?? '', `attribute ${attr}`)
    if (new Set(names.map(n => n[1])).size !== names.length) problems.push(`repeated attribute in ${tag.slice(0, 60)}`)
    if (stack.length === 0) roots++
    if (parts[3] !== '/') stack.push(parts[1] ?? '')
  }
  const rest = body.slice(last)
  if (rest.trim() !== '') problems.push(`text after the root: ${rest.trim().slice(0, 40)}`)
  if (stack.length > 0) problems.push(`unclosed: ${stack.join(' > ')}`)
  if (roots !== 1) problems.push(`${roots} root elements`)
  return problems
}

function expectSvg (svg: string): void {
  expect(xmlProblems(svg)).toEqual([])
  expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="700" /)
  expect(svg).toMatch(/<title id="title">[^<]+<\/title>/)
}

// ---------------------------------------------------------------------------------------
// a small run in the shape the scenarios write today

const modes = [{ connections: 10, keys: 1 }, { connections: 100, keys: 1000 }]
const speed: Record<string, number> = { bare: 1, 'frl-memory': 0.9, 'gcra-memory': 0.92, 'frl-redis': 0.5, 'frl-redis-pipe': 0.4, 'gcra-redis': 0.45, 'gcra-redis-pipe': 0.3 }
const runs = [0, 1].flatMap(round => modes.flatMap(({ connections, keys }) => (LIMITERS as string[]).map(limiter => ({
  round, connections, keys, limiter,
  rps: 50_000 * (speed[limiter] ?? 1) * (round === 0 ? 1 : 0.96),
  p50Ms: 0.1 / (speed[limiter] ?? 1), p99Ms: 0.5 / (speed[limiter] ?? 1), requests: 60_000, non2xx: 0, errors: 0,
  serverCpuUsPerRequest: 20 / (speed[limiter] ?? 1), ...(limiter.includes('redis') ? { redisCpuUsPerRequest: 6 } : {}),
  steal: 0, busy: 0.8, repeats: 0, highSteal: false,
}))))
const overhead = { name: 'overhead', quick: true, rounds: 2, durationS: 1.2, modes, runs, summary: summarise(runs, modes), seconds: 40 }
const accuracy = {
  name: 'accuracy', quick: true, durationS: 2, processes: 2, connections: 8, rate: 100, burst: 20,
  hammered: [
    { limiter: 'gcra-redis', clock: 'Redis TIME of each decision', requests: 90_000, admitted: 221, admittedByLoad: 221, elapsedS: 2.01, bound: 221, overBound: 0, ofBound: 1, densest1s: 119, denyCacheHits: 80_000 },
    { limiter: 'frl-redis', clock: 'app server clock', requests: 60_000, admitted: 300, admittedByLoad: 300, elapsedS: 2.0, bound: 220, overBound: 80, ofBound: 300 / 220, densest1s: 197, denyCacheHits: 0 },
  ],
  edges: [
    { limiter: 'gcra-redis', first: 1, before: 23, after: 12, volleys: 35, spanMs: 190.4, gcraBound: 39 },
    { limiter: 'frl-redis', first: 1, before: 99, after: 100, volleys: 199, spanMs: 201.7, gcraBound: 40 },
  ],
  seconds: 12,
}
const fixture: Json = {
  command: 'npm run bench -- --quick --only overhead,attack,accuracy',
  quick: true,
  date: '2026-01-02T03:04:05.678Z',
  seconds: 61.4,
  machine: { cpus: 2, cpuModel: 'Test CPU', memoryGiB: 8, node: 'v20.0.0', kernel: '6.0.0', redis: '7.2.0' },
  steal: 0.001,
  busy: 0.5,
  results: { overhead, attack: { name: 'attack', error: 'exited with 1' }, accuracy },
}

describe('bench docs page', () => {
  it('turns a run into a page: the run\'s header, an explanation, the tables and the charts of every scenario', async () => {
    const { markdown, charts } = await renderDocs(fixture)
    const [command, machine] = runHeader(fixture)
    expect(command).toBe('Command: `npm run bench -- --quick --only overhead,attack,accuracy` · 2026-01-02 03:04 UTC · 61 s')
    expect(machine).toContain('Machine: 2 × Test CPU, 8 GiB, Node v20.0.0, Linux 6.0.0, Redis 7.2.0')
    expect(markdown.startsWith(`# Benchmarks\n`)).toBe(true)
    expect(markdown).toContain(command)
    expect(markdown).toContain(machine)
    expect(markdown.indexOf(command)).toBeLessThan(markdown.indexOf('## Overhead'))
    expect(markdown).toContain('`--quick` run')
    for (const heading of ['## Overhead', '## Under attack', '## Accuracy']) expect(markdown).toContain(`\n${heading}\n`)
    // the overhead scenario's own tables, one per load mode, every limiter in each
    expect(markdown).toContain('**10 connections, 1 identity**')
    expect(markdown).toContain('**100 connections, 1,000 identities**')
    expect(markdown.match(/^\| limiter \| req\/s \(median\) \|/gm)).toHaveLength(2)
    expect(markdown.match(/^\| fastify-gcra, Redis \+ auto-pipelining \| /gm)).toHaveLength(2)
    expect(markdown).toContain('| bare Fastify | 49,000 |')
    // the accuracy tables, and the failed scenario said as such
    expect(markdown).toMatch(/^\| @fastify\/rate-limit, Redis \| 60,000 \| 300 \| /m)
    expect(markdown).toMatch(/^\| @fastify\/rate-limit, Redis \| 99 \| 100 \| 199 in 202 ms \| 40 \|$/m)
    expect(markdown).toContain('Failed: exited with 1.')
    // the plain explanations, from the results' own parameters
    expect(markdown).toContain('Load modes: 10 connections, 1 identity; 100 connections, 1,000 identities')
    expect(markdown).toContain('2 server processes with 8 connections each hammer one identity limited to \'100/second\', burst 20')
    // the charts: embedded, captioned, one file each
    expect(Object.keys(charts).sort()).toEqual([CHARTS.boundary, CHARTS.overhead].sort())
    for (const file of Object.keys(charts)) {
      expect(markdown).toMatch(new RegExp(`!\\[[^\\]]+\\]\\(${file.replace('.', '\\.')}\\)\\n\\n\\*Chart: recorded`))
    }
    // every table is well-formed: the separator row has as many cells as the header
    const lines = markdown.split('\n')
    lines.forEach((line: string, i: number) => {
      if (/^\|[-|:]+\|$/.test(line)) expect(line.split('|').length).toBe((lines[i - 1] ?? '').split('|').length)
    })
  })

  it('draws the overhead ratios as a well-formed SVG bar chart: every limiter, every mode, the medians', async () => {
    const { charts } = await renderDocs(fixture)
    const svg: string = charts[CHARTS.overhead]
    expectSvg(svg)
    expect(svg).toContain('relative to bare Fastify')
    expect(svg).toContain('req/s relative to bare Fastify (1× = no cost)')
    expect(svg).toContain('>100 connections, 1,000 identities</text>')
    expect(svg).toContain('>@fastify/rate-limit</text>')
    expect(svg).toContain('>Redis + auto-pipelining</text>')
    expect(svg).not.toContain('>bare Fastify</text>')
    // 6 limiters × 2 modes bars, with their medians (gcra-memory: 0.92 of bare in both rounds)
    expect(svg.match(/<rect [^>]*fill="#(9ecae1|3182bd)"/g)).toHaveLength(6 * 2 + 2)
    expect(svg).toContain('>0.92×</text>')
    expect(svg).toContain('>0.30×</text>')
  })

  it('draws the window boundary from the recorded volleys as a well-formed SVG', async () => {
    const { charts } = await renderDocs(fixture)
    const svg: string = charts[CHARTS.boundary]
    expectSvg(svg)
    expect(svg).toContain('window boundary')
    expect(svg).toContain('time since the first request (ms)')
    expect(svg).toContain('admitted so far')
    expect(svg.match(/<polyline /g)).toHaveLength(2)
    expect(svg).toContain('>+99</text>')
    expect(svg).toContain('>+23</text>')
    expect(svg).toContain('fastify-gcra, Redis (GCRA): 23 + 12 admitted within 190 ms')
    expect(svg).toContain('@fastify/rate-limit, Redis (fixed window): 99 + 100 admitted within 202 ms')
  })

  it('escapes what it writes into SVG, and leaves out a chart it has no data for', () => {
    expect(esc('a<b & "c">')).toBe('a&lt;b &amp; &quot;c&quot;&gt;')
    const svg = boundaryChart({ rate: 100, burst: 20, edges: [{ limiter: 'x<y & "z"', first: 1, before: 2, after: 3, spanMs: 150 }] })
    expectSvg(svg)
    expect(svg).toContain('x&lt;y &amp; &quot;z&quot;')
    expect(xmlProblems('<svg><text>a < b</text></svg>')).not.toEqual([])
    expect(xmlProblems('<svg><g><text>a</g></text></svg>')).not.toEqual([])
    expect(xmlProblems('<svg><text>a & b</text></svg>')).not.toEqual([])
    expect(boundaryChart({ edges: [] })).toBeUndefined()
    expect(overheadChart({ modes, summary: [] })).toBeUndefined()
  })

  it('reads the overhead results of earlier runs, which kept one connection count for the whole scenario', () => {
    const old = {
      connections: 10,
      keyModes: [1, 10_000],
      rounds: 1,
      summary: [1, 10_000].flatMap(keys => ['bare', 'gcra-memory'].map(limiter => ({ keys, limiter, vsBare: { median: limiter === 'bare' ? 1 : 0.8, min: NaN, max: NaN, n: 1 } }))),
    }
    const svg: string = overheadChart(old)
    expectSvg(svg)
    expect(svg).toContain('>10 connections, 10,000 identities</text>')
    expect(svg.match(/>0\.80×<\/text>/g)).toHaveLength(2)
  })

  it('takes the tables from latest.md when it was written by the same run, else from the scenarios', async () => {
    const sections = ['### Overhead as printed then\n\n| a | b |\n|---|---:|\n| x | 1 |', '### attack\n\nFailed: exited with 1.', '### Accuracy as printed then\n\n#### a sub-table\n\n| c |\n|---|\n| 2 |']
    const md = [...runHeader(fixture), '', ...sections.flatMap(s => [s, ''])].join('\n')
    const same = (await renderDocs(fixture, md)).markdown
    for (const section of sections) expect(same).toContain(section)
    expect(same).not.toContain('| limiter | req/s (median) |')
    const otherRun = md.replace('03:04 UTC', '03:05 UTC')
    const other = (await renderDocs(fixture, otherRun)).markdown
    expect(other).not.toContain('Overhead as printed then')
    expect(other).toContain('| limiter | req/s (median) |')
  })
})

describe('docs/benchmarks.md', () => {
  it('is what bench/results/latest.json makes (else: npm run bench:docs)', async () => {
    const { json, md } = readResults()
    const { markdown, charts } = await renderDocs(json, md)
    expect(readFileSync(join(DOCS_DIR, PAGE), 'utf8')).toBe(markdown)
    for (const [file, svg] of Object.entries(charts as Record<string, string>)) {
      expect(existsSync(join(DOCS_DIR, file)), file).toBe(true)
      expect(readFileSync(join(DOCS_DIR, file), 'utf8'), file).toBe(svg)
      expectSvg(svg)
      expect(markdown).toContain(`](${file})`)
    }
    const onDisk = readdirSync(DOCS_DIR).filter(f => f.startsWith(CHART_PREFIX) && f.endsWith('.svg')).sort()
    expect(onDisk).toEqual(Object.keys(charts).sort())
    expect(await checkDocs()).toEqual([])
  })

  it('has every scenario of the run, with its tables', async () => {
    const { json } = readResults()
    const page = readFileSync(join(DOCS_DIR, PAGE), 'utf8')
    expect(page).toContain(runHeader(json)[0])
    expect(page).toContain(runHeader(json)[1])
    for (const [name, result] of Object.entries(json.results as Record<string, Json>)) {
      if (result.error === undefined) expect(page, name).toMatch(/\n\|---/)
    }
    expect(page.match(/^### /gm)?.length).toBe(Object.keys(json.results).length)
  })
})
