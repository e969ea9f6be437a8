// The package as users load it: the built ESM and CommonJS entries, by name.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

function run (args: string[]): { out: string, status: number | null } {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 30_000 })
  return { out: r.stdout + r.stderr, status: r.status }
}

const script = (load: string) => `
${load}
const app = Fastify()
await app.register(gcra, { limits: ['1/minute'] })
app.get('/', async () => 'ok')
const a = await app.inject('/')
const b = await app.inject('/')
console.log(a.statusCode, b.statusCode, b.headers['retry-after'], typeof app.rateLimiter.consume)
await app.close()
`

describe('the built package', () => {
  it('has been built (npm test builds first)', () => {
    expect(existsSync('dist/esm/index.js') && existsSync('dist/cjs/index.js')).toBe(true)
  })

  it('works through require(\'fastify-gcra\')', () => {
    const r = run(['-e', `(async () => {${script("const Fastify = require('fastify'); const gcra = require('fastify-gcra'); if (gcra.fastifyGcra !== gcra.default) throw new Error('exports differ')")}})().catch(e => { console.error(e); process.exit(1) })`])
    expect(r.out.trim()).toBe('200 429 60 function')
    expect(r.status).toBe(0)
  })

  it('works through import \'fastify-gcra\'', () => {
    const r = run(['--input-type=module', '-e', script("import Fastify from 'fastify'; import gcra, { fastifyGcra } from 'fastify-gcra'; if (gcra !== fastifyGcra) throw new Error('exports differ')")])
    expect(r.out.trim()).toBe('200 429 60 function')
    expect(r.status).toBe(0)
  })

  it('exposes the client as fastify-gcra/client, for import and require', () => {
    const esm = run(['--input-type=module', '-e', "import { createClient, readRateLimit } from 'fastify-gcra/client'; console.log(typeof createClient, readRateLimit({ ratelimit: '\"a\";r=3;t=1' }).remaining)"])
    expect(esm.out.trim()).toBe('function 3')
    const cjs = run(['-e', "const { createClient, parseRetryAfter } = require('fastify-gcra/client'); console.log(typeof createClient, parseRetryAfter('7'))"])
    expect(cjs.out.trim()).toBe('function 7000')
  })
})
