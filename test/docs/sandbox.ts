/**
 * Runs a code sample of the docs as a user would: in a node process of its own, where
 * `import gcra from 'fastify-gcra'` resolves to this package's built files through its
 * package.json `exports`. The sandbox is a temporary folder holding a copy of
 * package.json and links to dist/ and node_modules/, so a sample file in it is inside
 * the package (a self-reference import) and nothing is written to the repository.
 */
import { spawn } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Fence } from './markdown.js'
import { ROOT, shortName } from './markdown.js'

export interface Sandbox {
  readonly dir: string
  remove (): void
}

export function createSandbox (): Sandbox {
  for (const built of ['dist/esm/index.js', 'dist/cjs/index.js', 'dist/esm/client/index.js']) {
    if (!existsSync(join(ROOT, built))) throw new Error(`${built} is missing: run \`npm run build\` first (the samples run against the built package)`)
  }
  const dir = mkdtempSync(join(tmpdir(), 'gcra-doc-samples-'))
  copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'))
  symlinkSync(join(ROOT, 'dist'), join(dir, 'dist'), 'dir')
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** A sample that talks to Redis reads its URL from REDIS_URL. */
export const needsRedis = (fence: Fence): boolean => /\bREDIS_URL\b/.test(fence.code + (fence.check ?? ''))

/**
 * The module a sample runs as: the sample, then its check. `assert` is there for the
 * check (an import is hoisted, wherever it stands).
 */
export function sampleSource (fence: Fence): string {
  const cjs = fence.flags.includes('cjs')
  const head = `// ${shortName(fence.file)}:${fence.line}\n`
  const assert = cjs ? "const assert = require('node:assert/strict')\n" : "import assert from 'node:assert/strict'\n"
  const check = fence.check === undefined ? '' : `\n// check\n${fence.check}\n`
  return cjs ? `${head}${assert}${fence.code}\n${check}` : `${head}${fence.code}\n${check}\n${assert}`
}

export interface SampleRun {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly timedOut: boolean
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs one sample to its end. It must exit by itself (every app and client it opened
 * closed) within `timeoutMs`; PORT=0 (and METRICS_PORT=0) makes a sample that listens take a free port.
 */
export async function runSample (sandbox: Sandbox, fence: Fence, env: Record<string, string>, timeoutMs = 20_000): Promise<SampleRun> {
  const name = `${shortName(fence.file).replace(/[^a-z0-9]+/gi, '-')}-${fence.line}.${fence.flags.includes('cjs') ? 'cjs' : 'mjs'}`
  const file = join(sandbox.dir, name)
  writeFileSync(file, sampleSource(fence))
  const child = spawn(process.execPath, [file], {
    cwd: sandbox.dir,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', METRICS_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill('SIGKILL')
  }, timeoutMs)
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('close', (c, s) => resolve([c, s]))
  })
  clearTimeout(timer)
  return { code, signal, timedOut, stdout, stderr }
}
