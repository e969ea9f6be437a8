// On a unix socket request.ip is undefined: the default identity must not turn that
// into a 500 on every limited route.
import { request } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { appWith, memoryCase, ok } from '../helpers/app.js'

function get (socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    request({ socketPath, path: '/p' }, res => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject).end()
  })
}

describe('requests without a client address', () => {
  it('share one bucket, with one warning, instead of failing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gcra-sock-'))
    const socketPath = join(dir, 'app.sock')
    try {
      const app = await appWith(memoryCase)
      app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
      await app.listen({ path: socketPath })
      expect([await get(socketPath), await get(socketPath), await get(socketPath)]).toEqual([200, 200, 429])
      expect(app.logs.filter(l => l.level === 40 && l.msg.includes('no client address'))).toHaveLength(1)
      await app.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
