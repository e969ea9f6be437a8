// A route's own bucket belongs to that route: an explicit HEAD route, routes that differ
// only by constraints, and the HEAD Fastify adds to a multi-method route.
import { describe, expect, it } from 'vitest'
import { appWith, ok, statuses, storeCases } from '../helpers/app.js'

describe.each(storeCases)('route buckets on the $name store', (store) => {
  it('give an explicit HEAD route its own bucket next to its GET route', async () => {
    const app = await appWith(store, { limits: ['2/minute'] })
    // declared first, so Fastify adds no HEAD of its own for the GET
    app.head('/x', async (_req, reply) => { reply.send() })
    app.get('/x', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.ready()
    expect(await statuses(app, 2, '/x')).toEqual([200, 429])
    expect(await statuses(app, 3, { method: 'HEAD', url: '/x' })).toEqual([200, 200, 429])
  })

  it('keep routes that differ only by constraints apart', async () => {
    const app = await appWith(store)
    const rateLimit = { limits: ['1/minute'] }
    app.get('/v', { constraints: { version: '1.0.0' }, config: { rateLimit } }, async () => 'v1')
    app.get('/v', { constraints: { version: '2.0.0' }, config: { rateLimit } }, async () => 'v2')
    const v = (version: string) => ({ url: '/v', headers: { 'accept-version': version } })
    expect(await statuses(app, 1, v('1.0.0'))).toEqual([200])
    expect(await statuses(app, 1, v('2.0.0'))).toEqual([200])
    expect(await statuses(app, 1, v('1.0.0'))).toEqual([429])
  })

  it('charge the HEAD of a GET+POST route to that route\'s one bucket', async () => {
    const app = await appWith(store)
    app.route({ method: ['GET', 'POST'], url: '/m', config: { rateLimit: { limits: ['3/minute'] } }, handler: ok })
    expect(await statuses(app, 1, '/m')).toEqual([200])
    expect(await statuses(app, 1, { method: 'HEAD', url: '/m' })).toEqual([200])
    expect(await statuses(app, 2, { method: 'POST', url: '/m' })).toEqual([200, 429])
  })
})
