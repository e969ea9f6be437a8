/** Reading the Prometheus text format in tests. */

/** The value of one sample in the Prometheus text format, or undefined when absent. */
export function sample (text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const match = /^([^{\s]+)(?:\{([^}]*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const have = match[2] === undefined ? [] : match[2].split(/,(?=[a-z_]+=)/)
    if (have.length === wanted.length && wanted.every(w => have.includes(w))) return Number(match[3])
  }
  return undefined
}
