// A tier resolver that rejects while the key resolver is still pending must not leave an
// unobserved rejection (Node would end the process): the request gets a 500, nothing else.
import { describe, expect, it } from 'vitest'
import { appWith, memoryCase, ok } from '../helpers/app.js'

describe('rejecting resolvers', () => {
  it('answer 500 and leave no unhandled rejection when the tier rejects before the key resolves', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => { unhandled.push(reason) }
    process.on('unhandledRejection', onUnhandled)
    try {
      const app = await appWith(memoryCase, {
        key: () => new Promise(resolve => setTimeout(() => resolve('slow-key'), 20)),
        tier: () => Promise.reject(new Error('tier db down')),
      })
      app.get('/p', { config: { rateLimit: { limits: ['5/minute'] } } }, ok)
      const r = await app.inject('/p')
      expect(r.statusCode).toBe(500)
      await new Promise(resolve => setTimeout(resolve, 50))
      expect(unhandled).toEqual([])
      expect(app.logs.find(l => l.level === 50)?.err?.message).toBe('tier db down')
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })

  it('answer 500 when both reject', async () => {
    const app = await appWith(memoryCase, {
      key: async () => { throw new Error('key db down') },
      tier: async () => { throw new Error('tier db down') },
    })
    app.get('/p', { config: { rateLimit: { limits: ['5/minute'] } } }, ok)
    expect((await app.inject('/p')).statusCode).toBe(500)
  })
})
