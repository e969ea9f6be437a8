// The issue: a route with config.rateLimit declared before `await app.register(gcra)`
// answered 200, 200, 200 to a '1/minute' limit, and nothing was said at startup. Now the
// app does not start (ready() and listen() fail naming the route); in order, it limits.
import { describe, expect, it } from 'vitest'
import gcra from '../../lib/index.js'
import { newApp, ok, statuses } from '../helpers/app.js'

const oncePerMinute = { config: { rateLimit: { limits: ['1/minute'] } } }

describe('a limited route the plugin cannot see', () => {
  it('does not start: ready() fails with FST_GCRA_UNSEEN_ROUTE naming it', async () => {
    const app = newApp()
    app.get('/predict', oncePerMinute, ok)
    await app.register(gcra)
    await expect(app.ready()).rejects.toMatchObject({
      code: 'FST_GCRA_UNSEEN_ROUTE',
      message: expect.stringContaining('would NOT be limited: GET /predict.'),
    })
  })

  it('does not listen either', async () => {
    const app = newApp()
    void app.register(gcra)
    app.get('/predict', oncePerMinute, ok)
    await expect(app.listen({ port: 0, host: '127.0.0.1' })).rejects.toMatchObject({ code: 'FST_GCRA_UNSEEN_ROUTE' })
  })

  it('is limited once declared after the awaited plugin: 200, then 429', async () => {
    const app = newApp()
    await app.register(gcra)
    app.get('/predict', oncePerMinute, ok)
    expect(await statuses(app, 3, '/predict')).toEqual([200, 429, 429])
  })
})
