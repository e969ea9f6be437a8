/**
 * Every relative link of README.md, docs/*.md and bench/ml-api/README.md leads to a file
 * that exists, and to a heading of it when it names an anchor.
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { anchors, docPages, links, shortName, slug } from './markdown.js'

function broken (page: string): string[] {
  const text = readFileSync(page, 'utf8')
  const out: string[] = []
  for (const { line, target } of links(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // https:, mailto:
    const [path, anchor] = target.split('#', 2) as [string, string | undefined]
    const file = path === '' ? page : resolve(dirname(page), decodeURIComponent(path))
    const where = `${shortName(page)}:${line}: ${target}`
    if (!existsSync(file)) {
      out.push(`${where} (no such file)`)
      continue
    }
    if (anchor === undefined || anchor === '') continue
    if (statSync(file).isDirectory() || !file.endsWith('.md')) {
      out.push(`${where} (an anchor into something that is not a markdown page)`)
      continue
    }
    if (!anchors(readFileSync(file, 'utf8')).has(anchor)) out.push(`${where} (no such heading)`)
  }
  return out
}

describe('links in the docs', () => {
  for (const page of docPages()) {
    it(`resolve in ${shortName(page)}`, () => {
      expect(existsSync(page)).toBe(true)
      expect(broken(page)).toEqual([])
    })
  }

  it('anchor headings as GitHub does', () => {
    expect(slug('When Redis fails')).toBe('when-redis-fails')
    expect(slug('`request.rateLimit`')).toBe('requestratelimit')
    expect(slug('Estimate, then settle')).toBe('estimate-then-settle')
    expect(slug('Adaptive limits (scale)')).toBe('adaptive-limits-scale')
    expect(slug('The probe: `fastify-gcra probe <url>`')).toBe('the-probe-fastify-gcra-probe-url')
    expect([...anchors('# A\n\n## A\n\n```\n# not a heading\n```\n')]).toEqual(['a', 'a-1'])
  })

  it('are found outside code, with their line', () => {
    const text = 'See [limits](docs/limits.md#costs) and `[not](a-link.md)`.\n\n```\n[nor](this.md)\n```\n![chart](c.svg "title")'
    expect(links(text)).toEqual([{ line: 1, target: 'docs/limits.md#costs' }, { line: 6, target: 'c.svg' }])
  })
})
