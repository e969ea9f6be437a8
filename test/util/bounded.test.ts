import { describe, expect, it } from 'vitest'
import { RecentMap } from '../../lib/util/bounded.js'
import { rememberedBy } from '../../lib/identity/hash.js'

describe('the cache of recent callers (two generations)', () => {
  it('keeps the last max entries used, and never more than twice max', () => {
    const map = new RecentMap<number>(100)
    for (let i = 0; i < 10_050; i++) {
      map.set(`k${i}`, i)
      expect(map.size).toBeLessThanOrEqual(200)
    }
    // the last 100 set are all there (reading them is a use too: read from the oldest)
    for (let i = 9_950; i < 10_050; i++) expect(map.get(`k${i}`)).toBe(i)
    expect(map.get('k9000')).toBeUndefined()
  })

  it('keeps an entry that is read, even when many new ones come between two reads', () => {
    const map = new RecentMap<string>(10)
    map.set('hot', 'h')
    for (let i = 0; i < 1000; i++) {
      map.set(`cold${i}`, 'c')
      // read once every 9 new entries: always within the last 10 used
      if (i % 9 === 0) expect(map.get('hot')).toBe('h')
    }
    expect(map.get('cold0')).toBeUndefined()
  })

  it('forgets what was not used for two generations', () => {
    const map = new RecentMap<number>(3)
    for (const k of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) map.set(k, 1)
    expect(['a', 'b', 'c', 'd'].map(k => map.get(k))).toEqual([undefined, undefined, undefined, 1])
  })

  it('makes a value once for as long as its identity stays among the recent ones', () => {
    let made = 0
    const callerOf = rememberedBy((id: string) => ({ id, n: made++ }), 1000)
    // 1,000 identities in turn, many times over: each made once
    for (let round = 0; round < 5; round++) for (let i = 0; i < 1000; i++) expect(callerOf(`id${i}`).id).toBe(`id${i}`)
    expect(made).toBe(1000)
    // an identity longer than 256 characters is made each time, not kept
    const long = 'x'.repeat(300)
    callerOf(long)
    callerOf(long)
    expect(made).toBe(1002)
  })
})
