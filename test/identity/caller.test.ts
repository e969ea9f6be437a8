import { describe, expect, it } from 'vitest'
import { Caller } from '../../lib/identity/caller.js'
import { buildPolicy, buildSet, type PolicySet } from '../../lib/limits/policy.js'
import { appWith, ok, statuses, storeCases } from '../helpers/app.js'

const setOf = (max: number, scope: string): PolicySet => buildSet([buildPolicy({ name: `${max}/minute`, max, perMs: 60_000, burst: max }, 1, scope)], 1)

describe('a caller\'s store keys', () => {
  const build = (built: string[]) => (hashed: string, set: PolicySet): string[] => {
    built.push(set.policies[0]!.name)
    return set.policies.map(p => `gcra:{${hashed}}:${p.id}`)
  }

  it('are built once per policy set and handed out again, for up to four sets', () => {
    const caller = new Caller('AAAAAAAAAAAAAAAAAAAAAA')
    const sets = [1, 2, 3, 4].map(i => setOf(i, `route:${i}`))
    const built: string[] = []
    const first = sets.map(set => caller.keysOf(set, build(built)))
    const again = sets.map(set => caller.keysOf(set, build(built)))
    // each set's keys name this caller and that set's policy
    sets.forEach((set, i) => expect(first[i]).toEqual([`gcra:{AAAAAAAAAAAAAAAAAAAAAA}:${set.policies[0]!.id}`]))
    sets.forEach((_, i) => expect(again[i]).toBe(first[i]))
    expect(built).toEqual(['1/minute', '2/minute', '3/minute', '4/minute'])
  })

  it('past four sets, keeps the latest ones: a new set takes the place of the one kept longest', () => {
    const caller = new Caller('BBBBBBBBBBBBBBBBBBBBBB')
    const sets = [1, 2, 3, 4, 5, 6].map(i => setOf(i, `route:${i}`))
    const built: string[] = []
    const keysOf = (i: number): readonly string[] => caller.keysOf(sets[i - 1]!, build(built))
    for (let i = 1; i <= 6; i++) keysOf(i)
    expect(built).toEqual(['1/minute', '2/minute', '3/minute', '4/minute', '5/minute', '6/minute'])
    // 5 and 6 took the places of 1 and 2: 3 to 6 are kept, 1 is built again (taking 3's place)
    built.length = 0
    for (const i of [3, 4, 5, 6, 6, 5]) keysOf(i)
    expect(built).toEqual([])
    expect(keysOf(1)).toEqual([`gcra:{BBBBBBBBBBBBBBBBBBBBBB}:${sets[0]!.policies[0]!.id}`])
    expect(built).toEqual(['1/minute'])
    // 3 is built again in 4's place; 5 is still kept
    keysOf(3)
    keysOf(5)
    expect(built).toEqual(['1/minute', '3/minute'])
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
