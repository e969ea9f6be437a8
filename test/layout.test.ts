/**
 * The shape of lib/: concepts in folders, files small enough to read, a thin entry, and no
 * module that imports a value from a module importing a value from it (no value cycle).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const LIB = resolve('lib')

function sources (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : name.endsWith('.ts') ? [path] : []
  })
}

/** The modules a file imports values from (type-only imports and specifiers left out). */
export function valueImports (file: string, text: string): string[] {
  const out: string[] = []
  for (const match of text.matchAll(/^import\s+(type\s+)?([^'"]*?)\s*(?:from\s+)?'(\.[^']+)'/gm)) {
    if (match[1] !== undefined) continue
    const clause = match[2]!.trim()
    // `import { type A, type B } from` carries no value; `import './x.js'` runs the module
    const braces = /^\{([^}]*)\}$/.exec(clause)
    if (braces !== null && braces[1]!.split(',').map(s => s.trim()).filter(Boolean).every(s => s.startsWith('type '))) continue
    out.push(resolve(dirname(file), match[3]!).replace(/\.js$/, '.ts'))
  }
  return out
}

function cycles (graph: Map<string, string[]>): string[][] {
  const found: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (node: string): void => {
    state.set(node, 'open')
    stack.push(node)
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next])
      else if (state.get(next) === undefined) visit(next)
    }
    stack.pop()
    state.set(node, 'done')
  }
  for (const node of graph.keys()) if (state.get(node) === undefined) visit(node)
  return found
}

describe('lib/ layout', () => {
  const files = sources(LIB)

  it('keeps concepts in folders: only the entry, the engine, errors, symbols and public types at the top', () => {
    const top = files.filter(f => dirname(f) === LIB).map(f => relative(LIB, f)).sort()
    expect(top).toEqual(['engine.ts', 'errors.ts', 'index.ts', 'symbols.ts', 'types.ts'])
  })

  it('keeps files under 350 lines and the entry under 150', () => {
    const long = files.map(f => [relative(LIB, f), readFileSync(f, 'utf8').split('\n').length] as const)
      .filter(([name, lines]) => lines > (name === 'index.ts' ? 150 : 350))
    expect(long).toEqual([])
  })

  it('has no value-import cycle between modules', () => {
    const graph = new Map(files.map(f => [f, valueImports(f, readFileSync(f, 'utf8'))]))
    expect(cycles(graph).map(c => c.map(f => relative(LIB, f)).join(' → '))).toEqual([])
  })

  it('finds a value cycle when there is one (the check itself)', () => {
    const a = join(LIB, 'a.ts')
    const b = join(LIB, 'b.ts')
    const graph = new Map([
      [a, valueImports(a, "import { x } from './b.js'\nimport type { T } from './c.js'\n")],
      [b, valueImports(b, "import { type U } from './c.js'\nimport { y } from './a.js'\n")],
    ])
    expect(cycles(graph).map(c => c.map(f => relative(LIB, f)))).toEqual([['a.ts', 'b.ts', 'a.ts']])
    expect(valueImports(b, "import { type U, type V } from './c.js'")).toEqual([])
  })
})
