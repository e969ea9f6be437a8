/**
 * `delay` beside everything else: a settle overrun on a route without delay is bounded as
 * if no route had one; shadow mode keeps the `maxDelayed` places enforcement would take;
 * a request whose first decision met a failing store does not wait for it a second time.
 */
import { Redis } from 'ioredis'
import { createServer, type Server } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import gcra from '../../lib/index.js'
import { newApp, storeCases } from '../helpers/app.js'

describe.each(storeCases)('a route with delay beside others ($name)', (store) => {
  async function overrunRetryAfter (otherDelay: string | number): Promise<string | undefined> {
    const app = newApp()
    await app.register(gcra, { ...store.options(), global: [] })
    app.get('/shaped', { config: { rateLimit: { limits: ['1/second'], delay: otherDelay } } }, async () => 'ok')
    // a request estimated at 1 that turns out to cost 100: far past an empty bucket
    app.get('/b', { config: { rateLimit: { limits: ['10/minute'] } } }, async (_req, reply) => { await reply.rateLimit!.settle(100); return 'ok' })
    await app.ready()
    expect((await app.inject('/b')).statusCode).toBe(200)
    const next = await app.inject('/b')
    expect(next.statusCode).toBe(429)
    return next.headers['retry-after'] as string | undefined
  }

  it('bounds a settle overrun at an empty bucket, whatever delay another route has', async () => {
    // '10/minute': T = 6 s = D / 10; the overrun leaves the bucket empty (TAT = now + 60 s): the next unit in 6 s
    expect(await overrunRetryAfter(0)).toBe('6')
    expect(await overrunRetryAfter('30s')).toBe('6')
  })

  it('in shadow mode keeps the places enforcement would hold, and refuses past them', async () => {
    // one app each: the places (maxDelayed: 1) are per instance
    const appOf = async (shadow: boolean) => {
      const app = newApp()
      await app.register(gcra, { ...store.options(), global: [], maxDelayed: 1, shadow })
      app.get('/r', { config: { rateLimit: { limits: [{ max: 1, per: '1s', burst: 1 }], delay: '3s' } } }, async req => req.rateLimit)
      await app.ready()
      return app
    }
    const asked = async (app: Awaited<ReturnType<typeof appOf>>) => {
      // the first fits at once; the second takes the one place; the third, 100 ms later, finds it taken
      const first = await app.inject('/r')
      const rest = await Promise.all([app.inject('/r'), new Promise(resolve => setTimeout(resolve, 100)).then(() => app.inject('/r'))])
      return [first, ...rest]
    }
    const [enforced, shadowed] = await Promise.all([appOf(false).then(asked), appOf(true).then(asked)])
    expect(enforced.map(r => r.statusCode)).toEqual([200, 200, 429])
    expect(shadowed.map(r => r.statusCode)).toEqual([200, 200, 200])
    expect(shadowed.map(r => r.json().allowed)).toEqual([true, true, false])
    expect(enforced[1]!.json().delayedMs).toBeGreaterThan(800)
    expect(shadowed[1]!.json().delayedMs).toBeGreaterThan(800)
    // both charged two: the same fields after
    expect(shadowed[2]!.headers.ratelimit).toBe(enforced[2]!.headers.ratelimit)
  }, 10_000)
})

describe('a route with delay while the store hangs (onStoreError: \'local\')', () => {
  let server: Server | undefined
  afterEach(() => { server?.close() })

  it('waits for the store once per request, not again for the decision with the delay', async () => {
    server = createServer(() => {})
    await new Promise<void>(resolve => server!.listen(0, '127.0.0.1', resolve))
    const client = new Redis({ port: (server.address() as { port: number }).port, maxRetriesPerRequest: 0 })
    const app = newApp()
    app.addHook('onClose', async () => { client.disconnect() })
    await app.register(gcra, { store: { redis: client }, storeTimeoutMs: 300, onStoreError: 'local', global: [] })
    app.get('/x', { config: { rateLimit: { limits: [{ max: 1, per: '1s', burst: 1 }], delay: '3s' } } }, async req => req.rateLimit)
    await app.ready()
    expect((await app.inject('/x')).statusCode).toBe(200)
    const started = performance.now()
    const second = await app.inject('/x')
    const took = performance.now() - started
    expect(second.statusCode).toBe(200)
    const info = second.json()
    expect(info.degraded).toBe(true)
    expect(info.delayedMs).toBeGreaterThan(0)
    // one store timeout (300 ms), then this process's decision and its hold; not two timeouts
    expect(took - info.delayedMs).toBeGreaterThanOrEqual(280)
    expect(took - info.delayedMs).toBeLessThan(550)
  }, 10_000)
})
