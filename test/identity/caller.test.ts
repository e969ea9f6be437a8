import { describe, expect, it } from 'vitest'
import { Caller } from '../../lib/identity/caller.js'
import { buildPolicy, buildSet, type PolicySet } from '../../lib/limits/policy.js'
import { appWith, ok, statuses, storeCases } from '../helpers/app.js'

const setOf = (max: number, scope: string): PolicySet => buildSet([buildPolicy({ name: `${max}/minute`, max, perMs: 60_000, burst: max }, 1, scope)], 1)

describe('a caller\'s store keys', () => {
  it('are built once per policy set and handed out again, for the first four sets a caller meets', () => {
    const caller = new Caller('AAAAAAAAAAAAAAAAAAAAAA')
    const sets = [1, 2, 3, 4, 5, 6].map(i => setOf(i, `route:${i}`))
    const built: string[] = []
    const build = (hashed: string, set: PolicySet): string[] => {
      built.push(set.policies[0]!.id)
      return set.policies.map(p => `gcra:{${hashed}}:${p.id}`)
    }
    const first = sets.map(set => caller.keysOf(set, build))
    const again = sets.map(set => caller.keysOf(set, build))
    // each set's keys name this caller and that set's policy
    sets.forEach((set, i) => expect(first[i]).toEqual([`gcra:{AAAAAAAAAAAAAAAAAAAAAA}:${set.policies[0]!.id}`]))
    // kept: the same array for the first four; the fifth and sixth are built each time, equal
    for (let i = 0; i < 4; i++) expect(again[i]).toBe(first[i])
    for (let i = 4; i < 6; i++) {
      expect(again[i]).not.toBe(first[i])
      expect(again[i]).toEqual(first[i])
    }
    expect(built).toEqual([...sets.map(s => s.policies[0]!.id), sets[4]!.policies[0]!.id, sets[5]!.policies[0]!.id])
  })
})

describe.each(storeCases)('one caller on many routes, on the $name store', (store) => {
  it('has its own buckets on each route, past the sets whose keys it keeps, and shares its global one', async () => {
    const app = await appWith(store, { global: ['14/minute'], key: (r) => r.headers['x-api-key'] as string })
    for (let i = 0; i < 6; i++) app.get(`/r${i}`, { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    app.get('/last', { config: { rateLimit: { limits: ['100/minute'] } } }, ok)
    await app.ready()
    const headers = { 'x-api-key': 'one' }
    for (let i = 0; i < 6; i++) expect(await statuses(app, 3, { url: `/r${i}`, headers }), `/r${i}`).toEqual([200, 200, 429])
    // the first routes still remember what this caller used; another caller has buckets of its own
    expect(await statuses(app, 1, { url: '/r0', headers })).toEqual([429])
    expect(await statuses(app, 2, { url: '/r5', headers: { 'x-api-key': 'other' } })).toEqual([200, 200])
    // 12 of the caller's 14 global units were used, on every route together: this is the 13th
    const last = await app.inject({ url: '/last', headers })
    expect(last.statusCode).toBe(200)
    expect(last.headers.ratelimit).toMatch(/^"100\/minute";r=99;t=\d+, "global 14\/minute";r=1;/)
  })
})
