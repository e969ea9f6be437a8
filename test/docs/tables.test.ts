/**
 * The reference tables name everything the code has: every plugin option and route
 * setting of lib/options/types.ts in the README's tables, every error code of
 * lib/errors.ts in docs/limits.md.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from './markdown.js'

const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8')

/** The property names declared at the top level of the `{ … }` that follows `opening`. */
export function properties (source: string, opening: string): string[] {
  const start = source.indexOf(opening)
  if (start === -1) throw new Error(`not found: ${opening}`)
  const open = source.indexOf('{', start + opening.length - 1)
  const names: string[] = []
  let depth = 0
  for (let i = open; i < source.length; i++) {
    const ch = source[i]
    if (ch === '{' || ch === '(' || ch === '[') depth++
    else if (ch === '}' || ch === ')' || ch === ']') {
      depth--
      if (depth === 0) break
    } else if (depth === 1 && (ch === '\n' || ch === ',')) {
      const name = /^\s*(?:readonly\s+)?([A-Za-z_$][\w$]*)\??\s*:/.exec(source.slice(i + 1))
      if (name !== null && !/^\s*\/\//.test(source.slice(i + 1))) names.push(name[1]!)
    }
  }
  return names
}

/** The names in the first column of the table that follows `heading`. */
function tableRows (markdown: string, heading: string): string[] {
  const start = markdown.indexOf(`\n${heading}\n`)
  if (start === -1) throw new Error(`no heading ${heading}`)
  const rows: string[] = []
  let inTable = false
  for (const line of markdown.slice(start + heading.length + 2).split('\n')) {
    if (line.startsWith('|')) {
      inTable = true
      const cell = /^\|\s*`([^`]+)`/.exec(line)
      if (cell !== null) rows.push(cell[1]!)
    } else if (inTable || line.startsWith('#')) break
  }
  return rows
}

describe('the reference tables', () => {
  const types = read('lib/options/types.ts')
  const readme = read('README.md')

  it('find the properties of an interface (the reader itself)', () => {
    expect(properties('interface X {\n  /** a */\n  a?: number\n  b: (x: { c: 1 }) => void\n}', 'interface X {')).toEqual(['a', 'b'])
  })

  it('name every plugin option in the README', () => {
    const options = properties(types, 'export interface FastifyGcraOptions {')
    expect(options.length).toBeGreaterThan(10)
    expect(tableRows(readme, '## Options').sort()).toEqual([...options].sort())
  })

  it('name every route setting in the README', () => {
    const settings = properties(types, 'export type RouteRateLimitConfig = false | {')
    expect(tableRows(readme, '## Route settings: `config.rateLimit`').filter(name => name !== 'false').sort()).toEqual([...settings].sort())
  })

  it('name every error code in docs/limits.md', () => {
    const codes = [...read('lib/errors.ts').matchAll(/^export const (FST_GCRA_\w+)/gm)].map(m => m[1]!)
    expect(codes.length).toBeGreaterThan(5)
    expect(tableRows(read('docs/limits.md'), '## Errors').sort()).toEqual([...codes].sort())
  })
})
