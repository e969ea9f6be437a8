// `fastify-gcra probe` as a person runs it: the built CLI in a child process.
import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { memoryCase, storeCases } from '../helpers/app.js'
import { freePort } from '../setup/redis.js'
import { FLOWER, startDemo } from '../helpers/demo.js'

function cli (args: string[], { interruptAfterMs }: { interruptAfterMs?: number } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['dist/esm/cli/index.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d })
    child.stderr.on('data', (d: Buffer) => { stderr += d })
    const kill = setTimeout(() => child.kill('SIGKILL'), 30_000)
    if (interruptAfterMs !== undefined) setTimeout(() => child.kill('SIGINT'), interruptAfterMs)
    child.on('error', reject)
    child.on('close', (code) => { clearTimeout(kill); resolve({ code, stdout, stderr }) })
  })
}

describe.each(storeCases)('fastify-gcra probe against the $name store', (store) => {
  it('prints the summary as JSON for scripts', async () => {
    const { url } = await startDemo(store, { inference: ['10/minute'], global: ['1000/hour'] })
    const r = await cli(['probe', `${url}/predict`, '-n', '13', '-c', '3', '--data', JSON.stringify(FLOWER), '-H', 'x-api-key: demo-free-key', '--json'])
    expect(r.code).toBe(0)
    const s = JSON.parse(r.stdout)
    expect(s).toMatchObject({ method: 'POST', sent: 13, admitted: 10, refused: 3, statuses: { 200: 10, 429: 3 } })
    expect(s.retryAfterSeconds.count).toBe(3)
  })
})

describe('fastify-gcra probe', () => {
  it('prints a table by default', async () => {
    const { url } = await startDemo(memoryCase, { inference: ['3/minute'], global: ['1000/hour'] })
    const r = await cli(['probe', `${url}/predict`, '-n', '5', '--data', JSON.stringify(FLOWER)])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('200 admitted      3')
    expect(r.stdout).toContain('429 refused       2')
    expect(r.stdout).toMatch(/"3\/minute"\s+3\s+60s\s+0\.050/)
  })

  it('stops on Ctrl-C and prints what it has', async () => {
    const { url } = await startDemo(memoryCase)
    const r = await cli(['probe', `${url}/health`, '-d', '20', '-r', '5', '--json'], { interruptAfterMs: 1500 })
    expect(r.code).toBe(130)
    const s = JSON.parse(r.stdout)
    expect(s.stopped).toBe('interrupted')
    expect(s.completed).toBeGreaterThan(2)
  })

  it.each([
    [['probe'], 'probe needs a URL'],
    [['probe', 'ftp://x'], "'ftp://x' is not an http(s) URL"],
    [['probe', 'http://127.0.0.1:1', '-n', '0'], '--requests must be a whole number from 1 to 100000'],
    [['probe', 'http://127.0.0.1:1', '-n', '2.5'], "--requests must be a whole number from 1 to 100000, got '2.5'"],
    [['probe', 'http://127.0.0.1:1', '-c', '1000'], '--concurrency must be a whole number from 1 to 256'],
    [['probe', 'http://127.0.0.1:1', '-X', 'GET', '--data', 'x'], 'a GET request cannot carry --data'],
    [['probe', 'http://127.0.0.1:1', '-H', 'bad name: v'], "'bad name: v' is not a valid header"],
    [['probe', 'http://127.0.0.1:1', 'http://127.0.0.1:2'], "one URL only, got also 'http://127.0.0.1:2'"],
    [['probe', 'http://127.0.0.1:1', '-H', 'nocolon'], "a header is 'Name: value'"],
    [['fire', 'http://x'], "unknown command 'fire'"],
  ])('refuses %j with usage and exit 2', async (args, message) => {
    const r = await cli(args)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(message)
    expect(r.stderr).toContain('Usage: fastify-gcra probe <url>')
  })

  it('says why when no request got a response, and exits 1', async () => {
    const r = await cli(['probe', `http://127.0.0.1:${await freePort()}/`, '-n', '3'])
    expect(r.code).toBe(1)
    expect(r.stdout).toContain('0 responses (3 without response)')
    expect(r.stdout).toContain('first error: fetch failed (ECONNREFUSED)')
    expect(r.stderr).toContain('no request got a response: fetch failed (ECONNREFUSED)')
  })
})
