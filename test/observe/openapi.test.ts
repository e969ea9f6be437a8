import swagger from '@fastify/swagger'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { describe, expect, it } from 'vitest'
import gcra, { type FastifyGcraOptions } from '../../lib/index.js'
import { newApp, ok, storeCases, type StoreCase } from '../helpers/app.js'

type Responses = Record<string, { description: string, headers?: Record<string, { schema: Record<string, unknown> }>, content?: Record<string, { schema: Record<string, unknown> }> }>

async function documentedApp (store: StoreCase, options: Partial<FastifyGcraOptions> = {}) {
  const app = newApp()
  await app.register(swagger, { openapi: { info: { title: 'test', version: '1.0.0' } } })
  await app.register(gcra, { ...store.options(), ...options })
  return app
}

function responses (app: FastifyInstance, url: string, method = 'get'): Responses {
  const spec = app.swagger() as unknown as { paths: Record<string, Record<string, { responses: Responses }>> }
  const operation = spec.paths[url]?.[method]
  expect(operation, `${method} ${url} in the spec`).toBeDefined()
  return operation!.responses
}

const DRAFT = ['RateLimit-Policy', 'RateLimit']
const LEGACY = ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset']
const headerNames = (r: Responses, status: string) => Object.keys(r[status]?.headers ?? {}).sort()

describe.each(storeCases)('OpenAPI on the $name store', (store) => {
  it('documents 429 and the rate-limit headers of limited routes, and nothing on exempt or unlimited ones', async () => {
    const app = await documentedApp(store)
    app.get('/limited', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    app.get('/exempt', { config: { rateLimit: false } }, ok)
    app.get('/unlimited', ok)
    await app.ready()

    const limited = responses(app, '/limited')
    expect(Object.keys(limited).sort()).toEqual(['200', '429'])
    expect(headerNames(limited, '200')).toEqual([...DRAFT].sort())
    expect(headerNames(limited, '429')).toEqual([...DRAFT, 'Retry-After'].sort())
    expect(limited['429']!.headers!['Retry-After']!.schema).toEqual({ type: 'integer', minimum: 1 })
    const problem = limited['429']!.content!['application/problem+json']!.schema
    expect(problem).toMatchObject({
      type: 'object',
      required: ['type', 'title', 'status', 'detail', 'violated-policies'],
      properties: { status: { type: 'integer', enum: [429] }, 'violated-policies': { type: 'array', items: { type: 'string' } } },
    })
    // the route has no response schema: the success response stays swagger's default, with the fields
    expect(limited['200']!.description).toBe('Default Response')

    for (const url of ['/exempt', '/unlimited']) expect(responses(app, url)).toEqual({ 200: { description: 'Default Response' } })
  })

  it('documents 413 only where a cost can exceed what a tier admits, and 503 only where a failing Redis gets one', async () => {
    const app = await documentedApp(store, { tiers: { trial: 0.5, premium: 5 } })
    app.get('/one', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    app.post('/batch', { config: { rateLimit: { limits: ['10/minute'], cost: (req) => (req.body as unknown[]).length } } }, ok)
    app.post('/heavy', { config: { rateLimit: { limits: ['10/minute'], cost: 15 } } }, ok)
    // a trial caller's bucket holds 5 units at once: a cost of 8 fits every tier but trial
    app.post('/trial-heavy', { config: { rateLimit: { limits: ['10/minute'], cost: 8 } } }, ok)
    app.get('/strict', { config: { rateLimit: { limits: ['10/minute'], onStoreError: 'deny' } } }, ok)
    await app.ready()

    expect(Object.keys(responses(app, '/one')).sort()).toEqual(['200', '429'])
    expect(Object.keys(responses(app, '/batch', 'post')).sort()).toEqual(['200', '413', '429'])
    expect(Object.keys(responses(app, '/heavy', 'post')).sort()).toEqual(['200', '413', '429'])
    expect(Object.keys(responses(app, '/trial-heavy', 'post')).sort()).toEqual(['200', '413', '429'])
    const batch = responses(app, '/batch', 'post')
    expect(headerNames(batch, '413')).toEqual([...DRAFT].sort()) // no Retry-After: waiting cannot help
    expect(batch['413']!.content!['application/problem+json']!.schema).toMatchObject({ properties: { 'max-cost': { type: 'number' } } })

    const strict = responses(app, '/strict')
    if (store.name === 'memory') {
      // the memory store does not fail: no 503 to document
      expect(Object.keys(strict).sort()).toEqual(['200', '429'])
    } else {
      expect(Object.keys(strict).sort()).toEqual(['200', '429', '503'])
      expect(headerNames(strict, '503')).toEqual(['Retry-After'])
      expect(strict['503']!.content!['application/problem+json']!.schema).toMatchObject({ properties: { status: { enum: [503] } } })
    }
  })

  it.each([
    ['legacy', LEGACY, LEGACY],
    ['both', [...DRAFT, ...LEGACY], [...DRAFT, ...LEGACY]],
    [false, [], undefined],
  ] as const)('documents the fields that headers: %j sends', async (headers, fields, success) => {
    const app = await documentedApp(store, { headers })
    app.get('/p', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    await app.ready()
    const r = responses(app, '/p')
    expect(headerNames(r, '429')).toEqual([...fields, 'Retry-After'].sort())
    if (success === undefined) expect(r['200']).toEqual({ description: 'Default Response' })
    else expect(headerNames(r, '200')).toEqual([...success].sort())
  })
})

describe('OpenAPI and the route\'s own schemas', () => {
  const store = storeCases[0]!

  it('adds the fields to declared success responses, keeps what the route declared, and never changes a shared schema', async () => {
    const app = await documentedApp(store)
    const shared = {
      response: {
        200: { type: 'object', properties: { label: { type: 'string' } }, headers: { 'X-Model': { type: 'string' } } },
        429: { description: 'Our own quota answer', type: 'object', properties: { wait: { type: 'number' } } },
      },
    }
    app.get('/limited', { schema: shared, config: { rateLimit: { limits: ['10/minute'] } } }, async () => ({ label: 'x' }))
    app.get('/exempt', { schema: shared, config: { rateLimit: false } }, async () => ({ label: 'x' }))
    await app.ready()

    const limited = responses(app, '/limited')
    expect(headerNames(limited, '200')).toEqual([...DRAFT, 'X-Model'].sort())
    expect(limited['200']!.content!['application/json']!.schema).toMatchObject({ properties: { label: { type: 'string' } } })
    expect(limited['429']!.description).toBe('Our own quota answer')
    expect(limited['429']!.headers).toBeUndefined()
    const exempt = responses(app, '/exempt')
    expect(headerNames(exempt, '200')).toEqual(['X-Model'])
    expect(Object.keys(shared.response)).toEqual(['200', '429'])
    expect(Object.keys(shared.response[200].headers)).toEqual(['X-Model'])
  })

  it('documents a custom errorResponseBuilder\'s body with the schema given, as JSON', async () => {
    const schema = { type: 'object', properties: { wait: { type: 'integer' } }, required: ['wait'] }
    const app = await documentedApp(store, {
      errorResponseBuilder: (_req, ctx) => ({ wait: ctx.retryAfterSeconds }),
      openapi: { errorResponseSchema: schema },
    })
    app.get('/p', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    await app.ready()
    const r = responses(app, '/p')
    expect(r['429']!.content).toEqual({ 'application/json': { schema } })
    expect(headerNames(r, '429')).toEqual([...DRAFT, 'Retry-After'].sort())
  })

  it('adds nothing with openapi: false, and hides the metrics route', async () => {
    const app = await documentedApp(store, { openapi: false, metrics: true })
    app.get('/p', { config: { rateLimit: { limits: ['10/minute'] } } }, ok)
    await app.ready()
    expect(responses(app, '/p')).toEqual({ 200: { description: 'Default Response' } })
    expect(Object.keys((app.swagger() as { paths: object }).paths)).toEqual(['/p'])
  })
})

describe('the openapi option', () => {
  it.each([
    [{ openapi: 'yes' }, 'options.openapi: expected true, false or { errorResponseSchema? }, got "yes"'],
    [{ openapi: { errorResponseSchema: 'x' } }, 'options.openapi.errorResponseSchema: expected a JSON schema object, got "x"'],
    [{ openapi: { schema: {} } }, "options.openapi.schema: expected one of the known keys (errorResponseSchema), got 'schema'"],
  ])('a bad value fails at startup: %j', async (options, message) => {
    await expect(newApp().register(gcra, options as unknown as FastifyGcraOptions)).rejects.toThrow(`fastify-gcra: ${message}`)
  })
})

describe.each(storeCases)('the documentation never changes a response, on the $name store', (store) => {
  /** The same routes with and without the documentation: every body byte for byte. */
  async function build (openapi: boolean) {
    const app = newApp()
    if (openapi) await app.register(swagger, { openapi: { info: { title: 'test', version: '1.0.0' } } })
    await app.register(async (child) => {
      await child.register(gcra, { ...store.options(), openapi, errorResponseBuilder: () => ({ slowDown: true, extra: { nested: [1, 'two'] } }) })
      child.get('/custom', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    })
    await app.register(async (child) => { await child.register(gcra, { ...store.options(), openapi } as FastifyGcraOptions); routes(child) })
    await app.ready()
    return app
  }

  function routes (app: FastifyInstance): void {
    app.get('/p', { schema: { response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } }, config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    app.post('/batch', { config: { rateLimit: { limits: ['2/minute'], cost: (req) => (req.body as unknown[]).length } } }, ok)
    // a handler's own 429 and 503, of the problem type the plugin documents, with fields of other types
    app.get('/own', { config: { rateLimit: { limits: ['100/minute'] } } }, async (_req, reply) => {
      return reply.code(429).type('application/problem+json').send({ status: 'busy', title: 7, 'violated-policies': 'upstream', detail: null, more: { a: 1 } })
    })
    app.get('/own-503', { config: { rateLimit: { limits: ['100/minute'] } } }, async (_req, reply) => {
      return reply.code(503).send({ upstream: 'down', status: [503] })
    })
  }

  async function bodies (openapi: boolean) {
    const app = await build(openapi)
    const out: Array<[number, string, string | undefined]> = []
    const hit = async (r: InjectOptions | string) => {
      const res = await app.inject(r)
      out.push([res.statusCode, res.body, res.headers['content-type'] as string | undefined])
    }
    await hit('/p'); await hit('/p')
    await hit('/custom'); await hit('/custom')
    await hit({ method: 'POST', url: '/batch', payload: [1, 2, 3] })
    await hit('/own'); await hit('/own-503')
    return out
  }

  it('the plugin\'s 429 and 413, a custom builder\'s body, and a handler\'s own 429 and 503', async () => {
    const documented = await bodies(true)
    expect(documented.map(([status]) => status)).toEqual([200, 429, 200, 429, 413, 429, 503])
    expect(documented).toEqual(await bodies(false))
    // and as sent, with every field
    expect(JSON.parse(documented[1]![1])).toMatchObject({ status: 429, 'violated-policies': ['1/minute'] })
    expect(JSON.parse(documented[3]![1])).toEqual({ slowDown: true, extra: { nested: [1, 'two'] } })
    expect(JSON.parse(documented[4]![1])).toMatchObject({ status: 413, 'max-cost': 2 })
    expect(JSON.parse(documented[5]![1])).toEqual({ status: 'busy', title: 7, 'violated-policies': 'upstream', detail: null, more: { a: 1 } })
    expect(JSON.parse(documented[6]![1])).toEqual({ upstream: 'down', status: [503] })
  })
})

describe('OpenAPI of concurrency limits', () => {
  it('documents what a concurrency limit can answer: 429 and its fields per caller, 503 for a route capacity, nothing else', async () => {
    const app = await documentedApp(storeCases[0]!)
    app.get('/caller', { config: { rateLimit: { concurrency: 2 } } }, ok)
    app.get('/capacity', { config: { rateLimit: { concurrency: { route: 4 } } } }, ok)
    app.post('/both', { config: { rateLimit: { limits: ['10/minute'], cost: () => 2, concurrency: { perCaller: 1, route: 8 } } } }, ok)
    await app.ready()
    const caller = responses(app, '/caller')
    expect(Object.keys(caller).sort()).toEqual(['200', '429'])
    expect(caller['429']!.description).toContain('requests in flight')
    expect(headerNames(caller, '200')).toEqual([...DRAFT].sort())
    const capacity = responses(app, '/capacity')
    expect(Object.keys(capacity).sort()).toEqual(['200', '503'])
    expect(headerNames(capacity, '200')).toEqual([])
    const both = responses(app, '/both', 'post')
    expect(Object.keys(both).sort()).toEqual(['200', '413', '429', '503'])
    expect(both['429']!.description).toContain('a rate limit of this route is exhausted, or the caller has as many requests in flight')
  })
})
