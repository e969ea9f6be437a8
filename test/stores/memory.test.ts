import fc from 'fast-check'
import { describe, expect, it, vi, afterEach } from 'vitest'
import { MemoryStore } from '../../lib/stores/memory.js'
import { appWith, memoryCase, statuses, ok } from '../helpers/app.js'

const D = 5_000_000
const charge = (store: MemoryStore, key: string, inc = 1_000_000) => store.decide([key], [D], [inc], true)

describe('memory store', () => {
  afterEach(() => { vi.useRealTimers() })

  it('never holds more than maxKeys buckets under a flood of identities', () => {
    let now = 1_000_000_000
    const store = new MemoryStore({ maxKeys: 1000, clock: () => now })
    for (let i = 0; i < 20_000; i++) {
      charge(store, `ip-${i}`)
      now += 100
    }
    expect(store.size).toBeLessThanOrEqual(1000)
  })

  it('stays under its cap under 1 M distinct identities, and counts the live buckets it loses', () => {
    let now = 1_000_000_000
    const store = new MemoryStore({ maxKeys: 100_000, clock: () => now })
    for (let i = 0; i < 1_000_000; i++) {
      // one in ten callers' buckets is already full again (TAT past) when the flood goes on
      store.decide([`ip-${i}`], [2_000_000_000], [i % 10 === 0 ? 1 : 1_000_000_000], true)
      now += 1
    }
    expect(store.size).toBeLessThanOrEqual(100_000)
    // each of the 900 000 evictions past the cap lost a live bucket, except the expired ones swept first
    expect(store.evictedLive).toBeGreaterThan(800_000)
    expect(store.evictedLive).toBeLessThan(900_000)
  }, 60_000)

  it('evicts expired buckets before live ones, and counts the live ones it has to evict', () => {
    let now = 1_000_000_000
    const store = new MemoryStore({ maxKeys: 3, clock: () => now })
    charge(store, 'old-1')
    charge(store, 'old-2')
    now += 10_000_000 // both are full again: no state left in them
    charge(store, 'live')
    charge(store, 'new-1')
    charge(store, 'new-2')
    expect(store.evictedLive).toBe(0)
    expect(store.size).toBe(3)
    // now every bucket is live: the least recently charged one goes, and is counted
    charge(store, 'new-3')
    expect(store.evictedLive).toBe(1)
    expect(store.decide(['live'], [D], [5_000_000], false).allowed).toBe(true)
    expect(store.decide(['new-1'], [D], [5_000_000], false).allowed).toBe(false)
  })

  it('keeps the order of last charge when the same keys are charged again in a row', () => {
    let now = 1_000_000_000
    const store = new MemoryStore({ maxKeys: 3, clock: () => now })
    const pair = (inc: number) => store.decide(['x', 'y'], [D, D], [inc, inc], true)
    charge(store, 'a')
    pair(1_000_000)
    pair(1_000_000)
    charge(store, 'a')
    charge(store, 'a')
    // x is now the least recently charged: it goes first, then y
    charge(store, 'b')
    expect(store.decide(['x'], [D], [5_000_000], false).allowed).toBe(true)
    expect(store.decide(['y'], [D], [4_000_000], false).allowed).toBe(false)
    charge(store, 'c')
    expect(store.decide(['y'], [D], [5_000_000], false).allowed).toBe(true)
    expect(store.decide(['a'], [D], [3_000_000], false).allowed).toBe(false)
    expect(store.evictedLive).toBe(2)
  })

  it('forgets a deleted bucket even when it was the last one charged', () => {
    const now = 1_000_000_000
    const store = new MemoryStore({ maxKeys: 10, clock: () => now })
    charge(store, 'a')
    store.delete(['a'])
    expect(store.size).toBe(0)
    charge(store, 'a')
    charge(store, 'a')
    expect(store.size).toBe(1)
    expect(store.decide(['a'], [D], [3_000_000], false).allowed).toBe(true)
    expect(store.decide(['a'], [D], [4_000_000], false).allowed).toBe(false)
  })

  it('keeps a recently charged bucket over one charged long ago', () => {
    let now = 1_000_000_000
    const store = new MemoryStore({ maxKeys: 2, clock: () => now })
    charge(store, 'a')
    charge(store, 'b')
    charge(store, 'a')
    charge(store, 'c')
    // 'b' was the least recently charged
    expect(store.decide(['b'], [D], [5_000_000], false).allowed).toBe(true)
    expect(store.decide(['a'], [D], [4_000_000], false).allowed).toBe(false)
  })

  it('reports its size and live evictions through fastify.rateLimiter.stats()', async () => {
    const app = await appWith(memoryCase, { store: { memory: { maxKeys: 2 } } })
    app.get('/p', { config: { rateLimit: { limits: ['1/hour'] } } }, ok)
    for (const remoteAddress of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) await app.inject({ url: '/p', remoteAddress })
    expect(app.rateLimiter.stats()).toEqual({ storeKeys: 2, evictedLive: 1, denyCacheHits: 0, openBreakers: 0, slotsHeld: 0 })
  })

  it('follows the system clock by default, so fake timers drive it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'))
    const app = await appWith(memoryCase, { store: { memory: { maxKeys: 100 } } })
    app.get('/p', { config: { rateLimit: { limits: ['2/minute'] } } }, ok)
    expect(await statuses(app, 3, '/p')).toEqual([200, 200, 429])
    vi.setSystemTime(new Date('2026-01-01T00:00:29.999Z'))
    expect(await statuses(app, 1, '/p')).toEqual([429])
    vi.setSystemTime(new Date('2026-01-01T00:00:30Z'))
    const back = await app.inject('/p')
    expect(back.statusCode).toBe(200)
    expect(back.headers.ratelimit).toBe('"2/minute";r=0;t=30')
  })
})

describe('memory store, a caller\'s handles', () => {
  // what can happen to a bucket between two decisions of its caller: other callers charge
  // (and evict, the store being small), the bucket is settled (moved, or refunded away),
  // deleted (a reset), or time passes and it expires
  const op = fc.oneof(
    fc.record({ kind: fc.constant('decide' as const), who: fc.nat(5), inc: fc.integer({ min: 0, max: 3_000_000 }), charge: fc.boolean() }),
    fc.record({ kind: fc.constant('adjust' as const), who: fc.nat(5), delta: fc.integer({ min: -4_000_000, max: 2_000_000 }) }),
    fc.record({ kind: fc.constant('delete' as const), who: fc.nat(5) }),
    fc.record({ kind: fc.constant('wait' as const), us: fc.integer({ min: 0, max: 3_000_000 }) }),
  )

  it('decide exactly as lookups would, whatever happened to the buckets in between', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 80 }), fc.integer({ min: 1, max: 8 }), (ops, maxKeys) => {
      let now = 1_000_000_000
      const clock = () => now
      const withHandles = new MemoryStore({ maxKeys, clock })
      const withLookups = new MemoryStore({ maxKeys, clock })
      // each caller has two buckets (a minute and a day, say); keys as the plugin makes them
      const keysOf = (who: number) => [`gcra:{c${who}}:m`, `gcra:{c${who}}:d`]
      const keys = [0, 1, 2, 3, 4, 5].map(keysOf)
      const handles = keys.map((): unknown[] => [])
      const caps = [D, 2 * D]
      for (const o of ops) {
        if (o.kind === 'wait') now += o.us
        else if (o.kind === 'delete') {
          withHandles.delete(keys[o.who]!)
          withLookups.delete(keys[o.who]!)
        } else if (o.kind === 'adjust') {
          expect(withHandles.adjust(keys[o.who]!, caps, [o.delta, o.delta])).toEqual(withLookups.adjust(keys[o.who]!, caps, [o.delta, o.delta]))
        } else {
          const a = withHandles.decide(keys[o.who]!, caps, [o.inc, o.inc], o.charge, 0, handles[o.who])
          const b = withLookups.decide(keys[o.who]!, caps, [o.inc, o.inc], o.charge)
          expect(a).toEqual(b)
        }
        expect(withHandles.size).toBe(withLookups.size)
        expect(withHandles.evictedLive).toBe(withLookups.evictedLive)
      }
    }), { numRuns: 300 })
  })

  it('are not used for other keys: a handle found for one key never answers for another', () => {
    const now = 1_000_000_000
    const store = new MemoryStore({ maxKeys: 10, clock: () => now })
    const handles: unknown[] = []
    expect(store.decide(['a'], [D], [D], true, 0, handles).allowed).toBe(true)
    // the same place, asked for another key: that key's own (empty) bucket decides
    expect(store.decide(['b'], [D], [D], true, 0, handles).allowed).toBe(true)
    expect(store.decide(['a'], [D], [1], false, 0, handles).allowed).toBe(false)
    expect(store.decide(['b'], [D], [1], false).allowed).toBe(false)
  })

  it('see a bucket that closing the store dropped as gone', () => {
    const now = 1_000_000_000
    const store = new MemoryStore({ maxKeys: 10, clock: () => now })
    const handles: unknown[] = []
    store.decide(['a'], [D], [D], true, 0, handles)
    store.close()
    expect(store.decide(['a'], [D], [D], true, 0, handles).allowed).toBe(true)
    expect(store.size).toBe(1)
  })
})
