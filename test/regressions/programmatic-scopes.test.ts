// rateLimiter.consume() with different limits in one scope (the default one included)
// is the simplest use: it must not be refused as a "scope conflict".
import { describe, expect, it } from 'vitest'
import { appWith, storeCases } from '../helpers/app.js'

describe.each(storeCases)('programmatic scopes on the $name store', (store) => {
  it('take several limit sets in the default scope, as separate buckets', async () => {
    const app = await appWith(store)
    await app.ready()
    expect((await app.rateLimiter.consume('user-1', ['60/minute'])).remaining).toBe(59)
    expect((await app.rateLimiter.consume('user-1', ['10/minute'])).remaining).toBe(9)
    expect((await app.rateLimiter.peek('user-1', ['10/hour'])).remaining).toBe(10)
    expect((await app.rateLimiter.consume('user-1', ['60/minute'])).remaining).toBe(58)
  })

  it('stay usable with many dynamic scopes, and reset forgets the recent ones', async () => {
    const app = await appWith(store)
    await app.ready()
    for (let room = 0; room < 1200; room++) {
      expect((await app.rateLimiter.consume('user-2', ['1/minute'], 1, { scope: `room-${room}` })).allowed).toBe(true)
    }
    expect((await app.rateLimiter.consume('user-2', ['1/minute'], 1, { scope: 'room-1199' })).allowed).toBe(false)
    await app.rateLimiter.reset('user-2')
    expect((await app.rateLimiter.consume('user-2', ['1/minute'], 1, { scope: 'room-1199' })).allowed).toBe(true)
  }, 30_000)
})
