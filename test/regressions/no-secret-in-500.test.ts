// The 500 for a broken resolver reaches the client: it must not echo the value, which
// may hold a secret.
import { describe, expect, it } from 'vitest'
import { appWith, memoryCase, ok } from '../helpers/app.js'

describe('500 bodies of broken resolvers', () => {
  it('name the kind of value, never its content', async () => {
    const app = await appWith(memoryCase, { key: () => ({ apiKey: 'sk-live-abcdef123456', plan: 'premium' }) as never })
    app.get('/p', { config: { rateLimit: { limits: ['5/minute'] } } }, ok)
    const r = await app.inject('/p')
    expect(r.statusCode).toBe(500)
    expect(r.body).not.toContain('sk-live')
    expect(r.json().message).toBe('fastify-gcra: the key resolver must return a string, a finite number or a non-empty array of strings, got an object')
  })

  it('accept a repeated header (string[]) as one identity', async () => {
    const app = await appWith(memoryCase, { key: (req) => req.headers['x-api-key'] ?? req.ip })
    app.get('/p', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    const twice = { url: '/p', headers: { 'x-api-key': ['a', 'b'] } }
    expect((await app.inject(twice)).statusCode).toBe(200)
    expect((await app.inject(twice)).statusCode).toBe(429)
  })
})
