/**
 * What the docs tests read from a markdown file: its code fences (with the words of their
 * info string and the hidden check that may follow them), its relative links and the
 * anchors its headings make.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..')

/** The pages whose samples run and whose links must resolve. */
export function docPages (): string[] {
  const docs = readdirSync(join(ROOT, 'docs')).filter(name => name.endsWith('.md')).sort().map(name => join(ROOT, 'docs', name))
  return [join(ROOT, 'README.md'), ...docs, join(ROOT, 'bench', 'ml-api', 'README.md')]
}

export const shortName = (file: string): string => relative(ROOT, file)

export interface Fence {
  readonly file: string
  /** 1-based line of the opening fence. */
  readonly line: number
  /** The first word of the info string (`js`), or ''. */
  readonly lang: string
  /** The other words (`run`, `fragment`, `cjs`). */
  readonly flags: readonly string[]
  readonly code: string
  /**
   * The body of a `<!-- check … -->` comment right after the fence (blank lines may come
   * between): code run after the sample, in the same module, that tests what the text
   * around the sample says and closes what the sample opened. Hidden on the rendered page.
   */
  readonly check: string | undefined
}

const OPEN = /^(\s*)(`{3,}|~{3,})\s*([^`]*)$/

/** Every fenced code block of a markdown text. */
export function fences (file: string, text: string = readFileSync(file, 'utf8')): Fence[] {
  const lines = text.split('\n')
  const out: Fence[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = OPEN.exec(lines[i]!)
    if (open === null) continue
    const [, indent, marker, info] = open
    const body: string[] = []
    let j = i + 1
    for (; j < lines.length; j++) {
      const line = lines[j]!
      if (line.trim().startsWith(marker!) && line.trim().replace(/[`~]/g, '') === '') break
      body.push(line.startsWith(indent!) ? line.slice(indent!.length) : line)
    }
    if (j === lines.length) throw new Error(`${shortName(file)}:${i + 1}: a code fence that is never closed`)
    const words = info!.trim().split(/\s+/).filter(Boolean)
    let k = j + 1
    while (k < lines.length && lines[k]!.trim() === '') k++
    let check: string | undefined
    if (k < lines.length && lines[k]!.trim() === '<!-- check') {
      const end = lines.findIndex((line, n) => n > k && line.trim() === '-->')
      if (end === -1) throw new Error(`${shortName(file)}:${k + 1}: a check comment that is never closed`)
      check = lines.slice(k + 1, end).join('\n')
      k = end
    }
    out.push({ file, line: i + 1, lang: words[0] ?? '', flags: words.slice(1), code: body.join('\n'), check })
    i = check === undefined ? j : k
  }
  return out
}

/** The lines outside code fences (the lines of a fence blanked, so numbers stay). */
function prose (text: string): string[] {
  const lines = text.split('\n')
  let fence: string | undefined
  return lines.map((line) => {
    const open = OPEN.exec(line)
    if (fence === undefined && open !== null) {
      fence = open[2]!
      return ''
    }
    if (fence !== undefined) {
      if (line.trim().startsWith(fence) && line.trim().replace(/[`~]/g, '') === '') fence = undefined
      return ''
    }
    return line
  })
}

export interface Link {
  readonly line: number
  readonly target: string
}

/** Every link and image target of the prose (inline `[text](target)` and `<a href>`/`<img src>`). */
export function links (text: string): Link[] {
  const out: Link[] = []
  prose(text).forEach((full, index) => {
    const line = full.replace(/`[^`]*`/g, '')
    for (const match of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ line: index + 1, target: match[1]! })
    for (const match of line.matchAll(/\b(?:href|src)="([^"]+)"/g)) out.push({ line: index + 1, target: match[1]! })
  })
  return out
}

/** The anchor GitHub gives a heading's text. */
export function slug (heading: string): string {
  // outside code spans: links and images give their text, inline HTML nothing
  const text = heading.split('`').map((part, i) => i % 2 === 1
    ? part
    : part.replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<[^>]+>/g, '').replace(/\*/g, '')).join('')
  return text.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
}

/** The anchors of a markdown text: its headings' slugs (repeats numbered as GitHub does) and explicit ids. */
export function anchors (text: string): Set<string> {
  const out = new Set<string>()
  const count = new Map<string, number>()
  for (const line of prose(text)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (heading !== null) {
      const base = slug(heading[1]!)
      const seen = count.get(base) ?? 0
      count.set(base, seen + 1)
      out.add(seen === 0 ? base : `${base}-${seen}`)
    }
    for (const match of line.matchAll(/\b(?:id|name)="([^"]+)"/g)) out.add(match[1]!)
  }
  return out
}
