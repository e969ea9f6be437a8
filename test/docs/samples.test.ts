/**
 * The code samples of README.md and docs/*.md run. A fence marked `js run` (`js run cjs`
 * for CommonJS) is run in a node process of its own against the built package, followed
 * by the hidden `<!-- check … -->` after it, if any; it must exit 0 by itself, so it
 * closes what it opened. A JavaScript fence that does not run says so: `js fragment`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hasRedis, redisUrl } from '../helpers/redis.js'
import { docPages, fences, shortName, type Fence } from './markdown.js'
import { createSandbox, needsRedis, runSample, sampleSource, type Sandbox } from './sandbox.js'

const CODE_LANGS = new Set(['js', 'javascript', 'mjs', 'cjs', 'ts', 'typescript'])

const all = docPages().flatMap(page => fences(page))
const runnable = all.filter(f => CODE_LANGS.has(f.lang) && f.flags.includes('run'))
const label = (f: Fence): string => `${shortName(f.file)}:${f.line}`

describe('the docs\' code fences', () => {
  it('say of every JavaScript or TypeScript sample whether it runs (`run`) or not (`fragment`)', () => {
    const unmarked = all.filter(f => CODE_LANGS.has(f.lang) && !f.flags.includes('run') && !f.flags.includes('fragment'))
    expect(unmarked.map(label)).toEqual([])
  })

  it('run only JavaScript, and carry a check only after a sample that runs', () => {
    expect(runnable.filter(f => f.lang !== 'js').map(label)).toEqual([])
    expect(all.filter(f => f.check !== undefined && !runnable.includes(f)).map(label)).toEqual([])
  })

  it('include samples that run on every page of the guides', () => {
    const pages = new Set(runnable.map(f => shortName(f.file)))
    for (const page of ['README.md', 'docs/limits.md', 'docs/inference.md', 'docs/redis.md', 'docs/observability.md', 'docs/client.md']) {
      expect(pages, page).toContain(page)
    }
  })

  it('put the check after the sample, where an import is hoisted', () => {
    const source = sampleSource({ file: 'x.md', line: 1, lang: 'js', flags: ['run'], code: 'const a = 1', check: 'assert.equal(a, 1)' })
    expect(source.indexOf('const a = 1')).toBeLessThan(source.indexOf('assert.equal(a, 1)'))
    expect(source).toContain("import assert from 'node:assert/strict'")
  })
})

describe('every sample marked `run` runs against the built package', () => {
  let sandbox: Sandbox
  beforeAll(() => { sandbox = createSandbox() })
  afterAll(() => sandbox?.remove())

  for (const fence of runnable) {
    it.skipIf(needsRedis(fence) && !hasRedis)(label(fence), async () => {
      const run = await runSample(sandbox, fence, { REDIS_URL: redisUrl })
      const report = `${label(fence)}: ${run.timedOut ? 'did not exit within its timeout (an app or a client left open?)' : `exit ${run.code ?? run.signal}`}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`
      expect(run.timedOut, report).toBe(false)
      expect(run.code, report).toBe(0)
    }, 30_000)
  }
})
