// A route with config.rateLimit that the plugin's onRoute hook never saw would never be
// limited: ready() fails with FST_GCRA_UNSEEN_ROUTE naming it. Routes it saw (planned or
// exempt, the HEAD Fastify adds included) and routes without config.rateLimit never fail it.
import fp from 'fastify-plugin'
import { afterEach, describe, expect, it, vi } from 'vitest'
import gcra, { FST_GCRA_UNSEEN_ROUTE } from '../../lib/index.js'
import { newApp, ok, statuses } from '../helpers/app.js'

const oncePerMinute = { config: { rateLimit: { limits: ['1/minute'] } } }

/** The error ready() fails with (undefined when it does not fail). */
async function readyError (app: ReturnType<typeof newApp>): Promise<(Error & { code?: string }) | undefined> {
  try {
    await app.ready()
    return undefined
  } catch (err) {
    return err as Error & { code?: string }
  }
}

/** The routes an FST_GCRA_UNSEEN_ROUTE message names. */
function named (err: Error | undefined): string | undefined {
  return err === undefined ? undefined : /would NOT be limited: (.*?)\. Register/.exec(err.message)?.[1]
}

describe('routes declared where the plugin cannot see them', () => {
  it('(a) fail ready() for a route declared before `await app.register(gcra)`', async () => {
    const app = newApp()
    app.get('/early', oncePerMinute, ok)
    await app.register(gcra)
    const err = await readyError(app)
    expect(err).toBeInstanceOf(FST_GCRA_UNSEEN_ROUTE)
    expect(err?.code).toBe('FST_GCRA_UNSEEN_ROUTE')
    // the HEAD Fastify adds for the GET is named through its GET
    expect(named(err)).toBe('GET /early')
    expect(err?.message).toContain('await app.register(gcra, options)')
    expect(err?.message).toContain('config: { rateLimit: false }')
  })

  it('(b) fail ready() for a route declared after a register() that was not awaited', async () => {
    const app = newApp()
    void app.register(gcra)
    // added to the router at once; the plugin (and its onRoute hook) loads on a later tick
    app.post('/predict', oncePerMinute, ok)
    app.route({ method: ['GET', 'PUT'], url: '/multi', ...oncePerMinute, handler: ok })
    expect(named(await readyError(app))).toBe('POST /predict, GET,PUT /multi')
  })

  it('(c) fail ready() for a route of a sibling context registered before the plugin', async () => {
    const app = newApp()
    void app.register(async (child) => { child.get('/x', oncePerMinute, ok) }, { prefix: '/api' })
    await app.register(gcra)
    expect(named(await readyError(app))).toBe('GET /api/x')
  })

  it('(d) fail ready() for a sibling context of the context the plugin is registered in', async () => {
    const app = newApp()
    void app.register(async (limited) => {
      await limited.register(gcra)
      limited.get('/inside', oncePerMinute, ok)
    })
    void app.register(async (sibling) => { sibling.get('/sibling', oncePerMinute, ok) })
    expect(named(await readyError(app))).toBe('GET /sibling')
  })

  it('name a route\'s constraints, and an invalid config.rateLimit it never validated', async () => {
    const app = newApp()
    app.get('/v', { constraints: { version: '1.0.0' }, ...oncePerMinute }, ok)
    app.get('/bad', { config: { rateLimit: { limits: ['abc'] } } }, ok)
    await app.register(gcra)
    expect(named(await readyError(app))).toBe('GET /v {"version":"1.0.0"}, GET /bad')
  })

  it('read config.rateLimit as it is at ready (an onRoute hook after the census may set it)', async () => {
    const app = newApp()
    app.addHook('onRoute', (route) => { if (route.url === '/tagged') route.config = { ...route.config, rateLimit: { limits: ['1/minute'] } } })
    app.get('/tagged', ok)
    await app.register(gcra)
    expect(named(await readyError(app))).toBe('GET /tagged')
  })
})

describe('routes the plugin saw, or that ask for nothing', () => {
  it('limit a route declared after `await app.register(gcra)`, and its HEAD', async () => {
    const app = newApp()
    await app.register(gcra)
    app.get('/x', oncePerMinute, ok)
    expect(await readyError(app)).toBeUndefined()
    expect(await statuses(app, 2, '/x')).toEqual([200, 429])
  })

  it('accept routes in contexts registered after a register() that was not awaited', async () => {
    const app = newApp()
    void app.register(gcra)
    void app.register(async (child) => { child.get('/child', oncePerMinute, ok) })
    app.after(() => { app.get('/after', oncePerMinute, ok) })
    expect(await readyError(app)).toBeUndefined()
    expect(await statuses(app, 2, '/child')).toEqual([200, 429])
    expect(await statuses(app, 2, '/after')).toEqual([200, 429])
  })

  it('accept routes inside the context the plugin is registered in (a prefixed "/" included)', async () => {
    const app = newApp()
    void app.register(async (api) => {
      await api.register(gcra)
      api.get('/', oncePerMinute, ok)
      void api.register(async (deeper) => { deeper.get('/deep', oncePerMinute, ok) })
    }, { prefix: '/api' })
    expect(await readyError(app)).toBeUndefined()
    expect(await statuses(app, 2, '/api')).toEqual([200, 429])
    expect(await statuses(app, 2, '/api/deep')).toEqual([200, 429])
  })

  it('accept exempt routes and routes without config.rateLimit wherever they are declared', async () => {
    const app = newApp()
    app.get('/health', { config: { rateLimit: false } }, ok)
    app.get('/plain', ok)
    void app.register(async (sibling) => {
      sibling.get('/exempt', { config: { rateLimit: false } }, ok)
      sibling.get('/other', ok)
    })
    await app.register(gcra, { limits: ['1/minute'] })
    expect(await readyError(app)).toBeUndefined()
  })

  it('accept a route seen by any of the plugin instances of the app', async () => {
    const app = newApp()
    void app.register(async (one) => {
      await one.register(gcra)
      one.get('/one', oncePerMinute, ok)
    })
    void app.register(async (two) => {
      await two.register(gcra)
      two.get('/two', oncePerMinute, ok)
    })
    expect(await readyError(app)).toBeUndefined()
    expect(await statuses(app, 2, '/two')).toEqual([200, 429])
  })

  it('accept routes of a plugin wrapped with fastify-plugin registered after gcra', async () => {
    const app = newApp()
    await app.register(gcra)
    await app.register(fp(async (f) => { f.get('/fp', oncePerMinute, ok) }))
    expect(await readyError(app)).toBeUndefined()
    expect(await statuses(app, 2, '/fp')).toEqual([200, 429])
  })
})

describe('an app created before fastify-gcra was imported', () => {
  afterEach(() => { vi.restoreAllMocks() })

  it('is not checked, and says so once with a process warning', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const app = newApp()
    // as if Fastify() had run before this module subscribed to fastify.initialization
    delete (app as unknown as Record<symbol, unknown>)[Symbol.for('fastify-gcra.route-census')]
    app.get('/early', oncePerMinute, ok)
    await app.register(gcra)
    expect(await readyError(app)).toBeUndefined()
    expect(warn).toHaveBeenCalledTimes(1)
    expect(warn.mock.calls[0]?.[0]).toContain('first imported after this Fastify instance was created')
    expect(warn.mock.calls[0]?.[1]).toMatchObject({ code: 'FST_GCRA_ROUTES_UNCHECKED' })
  })
})
