// `node bench/lib/profile.js <file.cpuprofile> [n]`: the functions with most self time in a
// V8 CPU profile (what `--cpu-prof` writes), to read a benchmark's profile without a browser.
import { readFileSync } from 'node:fs'
import { basename } from 'node:path'

export function topSelf (profile, n = 25) {
  const byId = new Map(profile.nodes.map(node => [node.id, node]))
  const ticks = new Map()
  for (const id of profile.samples) ticks.set(id, (ticks.get(id) ?? 0) + 1)
  const total = profile.samples.length
  const self = new Map()
  for (const [id, count] of ticks) {
    const f = byId.get(id).callFrame
    const name = `${f.functionName || '(anonymous)'} ${f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : ''}`.trim()
    self.set(name, (self.get(name) ?? 0) + count)
  }
  return [...self].sort((a, b) => b[1] - a[1]).slice(0, n).map(([name, count]) => ({ name, share: count / total }))
}

if (process.argv[1]?.endsWith('profile.js') && process.argv[2] !== undefined) {
  const profile = JSON.parse(readFileSync(process.argv[2], 'utf8'))
  for (const { name, share } of topSelf(profile, Number(process.argv[3] ?? 25))) console.log(`${(share * 100).toFixed(1).padStart(5)} %  ${name}`)
}
