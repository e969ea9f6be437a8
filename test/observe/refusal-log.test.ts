import type { FastifyReply, FastifyRequest } from 'fastify'
import { describe, expect, it } from 'vitest'
import type { Observation } from '../../lib/observe/outcome.js'
import { RefusalLog } from '../../lib/observe/refusal-log.js'
import { appWith, ok, storeCases, type LogLine } from '../helpers/app.js'

const refusals = (logs: LogLine[]) => logs.filter(l => l.msg.startsWith('fastify-gcra: request refused'))

describe.each(storeCases)('refusal logs on the $name store', (store) => {
  it('log refusals through the request logger, at most perSecond a second, then say how many were left out', async () => {
    const app = await appWith(store, { logRefusals: { perSecond: 2 }, tiers: { premium: 5 } })
    app.get('/a', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.ready()
    const codes = []
    for (let i = 0; i < 7; i++) codes.push((await app.inject('/a')).statusCode)
    expect(codes).toEqual([200, 429, 429, 429, 429, 429, 429])
    let lines = refusals(app.logs)
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatchObject({
      level: 30,
      msg: 'fastify-gcra: request refused (refused)',
      reqId: expect.any(String),
      rateLimit: { outcome: 'refused', route: 'GET /a', tier: 'none', statusCode: 429, cost: 1, policies: ['1/minute'], caller: expect.stringMatching(/^[\w-]{16}$/) },
    })
    expect(lines[0]!.rateLimit).toMatchObject({ retryAfterMs: expect.any(Number) })
    expect(lines[0]).not.toHaveProperty('suppressed')
    // the next second: one more line, which counts the four left out
    await new Promise(resolve => setTimeout(resolve, 1050))
    expect((await app.inject('/a')).statusCode).toBe(429)
    lines = refusals(app.logs)
    expect(lines).toHaveLength(3)
    expect(lines[2]!.suppressed).toBe(4)
  })

  it('log 413s with the largest cost, at the chosen level, and never an admitted request', async () => {
    const app = await appWith(store, { logRefusals: { level: 'warn' } })
    app.post('/batch', { config: { rateLimit: { limits: ['5/minute'], cost: (req) => (req.body as { n: number }).n } } }, ok)
    await app.ready()
    expect((await app.inject({ method: 'POST', url: '/batch', payload: { n: 2 } })).statusCode).toBe(200)
    expect((await app.inject({ method: 'POST', url: '/batch', payload: { n: 9 } })).statusCode).toBe(413)
    const lines = refusals(app.logs)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 40, msg: 'fastify-gcra: request refused (too_large)', rateLimit: { outcome: 'too_large', route: 'POST /batch', statusCode: 413, cost: 9, maxCost: 5 } })
  })

  it('log nothing unless asked', async () => {
    const app = await appWith(store)
    app.get('/a', { config: { rateLimit: { limits: ['1/minute'] } } }, ok)
    await app.ready()
    for (let i = 0; i < 3; i++) await app.inject('/a')
    expect(refusals(app.logs)).toHaveLength(0)
  })
})

describe('the refusal log bound', () => {
  it('counts per one-second window of its clock', () => {
    let now = 10_000
    const log = new RefusalLog({ perSecond: 3, level: 'info' }, () => now)
    const lines: Array<Record<string, unknown>> = []
    const request = { rateLimit: null, log: { info: (fields: Record<string, unknown>) => lines.push(fields) } } as unknown as FastifyRequest
    const reply = { statusCode: 503 } as FastifyReply
    const seen: Observation = { route: 'GET /p', tier: 'none', outcome: 'store_unavailable', shadow: false }
    for (let i = 0; i < 10; i++) log.sink(request, reply, seen)
    expect(lines).toHaveLength(3)
    expect(log.suppressed).toBe(7)
    now += 999
    log.sink(request, reply, seen)
    expect(lines).toHaveLength(3)
    now += 1
    log.sink(request, reply, seen)
    expect(lines).toHaveLength(4)
    expect(lines[3]).toMatchObject({ suppressed: 8, rateLimit: { outcome: 'store_unavailable', statusCode: 503 } })
    expect(log.suppressed).toBe(0)
    // admitted and unchecked requests are not refusals
    log.sink(request, reply, { ...seen, outcome: 'admitted' })
    log.sink(request, reply, { ...seen, outcome: 'unchecked' })
    expect(lines).toHaveLength(4)
  })
})
