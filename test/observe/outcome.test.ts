import type { FastifyReply, FastifyRequest } from 'fastify'
import { describe, expect, it } from 'vitest'
import { RequestState } from '../../lib/http/state.js'
import { Caller } from '../../lib/identity/caller.js'
import type { RoutePlan } from '../../lib/limits/plan.js'
import { observeRoute, OUTCOMES, outcomeOf, tierLabel, type Observation } from '../../lib/observe/outcome.js'
import { kState } from '../../lib/symbols.js'
import { appWith, memoryCase, newApp, ok, type LogLine } from '../helpers/app.js'
import gcra from '../../lib/index.js'

const plan = { label: 'POST /p' } as RoutePlan
const requestWith = (state: RequestState | null): FastifyRequest => ({ [kState]: state }) as unknown as FastifyRequest

describe('outcomes read from the request state', () => {
  it('are what the hooks recorded, or undefined without a decision', () => {
    const state = new RequestState(plan, new Caller('k'), null, 100)
    expect(outcomeOf(requestWith(state))).toBeUndefined()
    state.outcome = 'refused_locally'
    expect(outcomeOf(requestWith(state))).toBe('refused_locally')
    expect(outcomeOf(requestWith(null))).toBeUndefined()
  })

  it('label a configured tier by name and anything else as none', () => {
    const tiers = new Map([['premium', 5]])
    expect(tierLabel(requestWith(new RequestState(plan, new Caller('k'), 'premium', 100)), tiers)).toBe('premium')
    expect(tierLabel(requestWith(new RequestState(plan, new Caller('k'), 'made-up', 100)), tiers)).toBe('none')
    expect(tierLabel(requestWith(new RequestState(plan, new Caller('k'), null, 100)), tiers)).toBe('none')
    expect(tierLabel(requestWith(null), tiers)).toBe('none')
  })

  it('reach every sink once per decided request, and no sink without a decision', () => {
    const seen: Observation[][] = [[], []]
    const hook = observeRoute('POST /p', new Map([['premium', 5]]), seen.map(list => (_req: FastifyRequest, _reply: FastifyReply, o: Observation) => { list.push(o) }))
    const decided = new RequestState(plan, new Caller('k'), 'premium', 100)
    decided.outcome = 'admitted'
    let done = 0
    hook.call(undefined as never, requestWith(decided), {} as FastifyReply, () => { done++ })
    hook.call(undefined as never, requestWith(new RequestState(plan, new Caller('k'), null, 100)), {} as FastifyReply, () => { done++ })
    expect(done).toBe(2)
    expect(seen).toEqual([[{ route: 'POST /p', tier: 'premium', outcome: 'admitted' }], [{ route: 'POST /p', tier: 'premium', outcome: 'admitted' }]])
  })

  it('list every outcome once', () => {
    expect(new Set(OUTCOMES).size).toBe(OUTCOMES.length)
    expect(OUTCOMES).toContain('reduced_capacity')
  })
})

describe('outcomes recorded when the decision is made', () => {
  const refused = (logs: LogLine[]) => logs.filter(l => l.msg.startsWith('fastify-gcra: request refused')).map(l => (l.rateLimit as { outcome: string }).outcome)

  it('count a handler\'s own 413 as what the limiter decided (admitted), not as a cost too large', async () => {
    const app = await appWith(memoryCase, { logRefusals: true })
    app.post('/p', { config: { rateLimit: { limits: ['5/minute'] } } }, async (_req, reply) => reply.code(413).send({ too: 'big' }))
    await app.ready()
    expect((await app.inject({ method: 'POST', url: '/p' })).statusCode).toBe(413)
    expect(refused(app.logs)).toEqual([])
  })

  it('count a handler\'s own 413 on a failing store under \'allow\' as unchecked, not as a cost too large', async () => {
    const app = newApp()
    await app.register(gcra, { store: { redis: 'redis://127.0.0.1:1' }, onStoreError: 'allow', storeTimeoutMs: 50, logRefusals: true })
    app.post('/p', { config: { rateLimit: { limits: ['5/minute'] } } }, async (_req, reply) => reply.code(413).send({ too: 'big' }))
    await app.ready()
    for (let i = 0; i < 3; i++) expect((await app.inject({ method: 'POST', url: '/p' })).statusCode).toBe(413)
    expect(refused(app.logs)).toEqual([])
  })

  it('count the plugin\'s own 413 as too_large', async () => {
    const app = await appWith(memoryCase, { logRefusals: true })
    app.post('/p', { config: { rateLimit: { limits: ['5/minute'], cost: 9 } } }, ok)
    await app.ready()
    expect((await app.inject({ method: 'POST', url: '/p' })).statusCode).toBe(413)
    expect(refused(app.logs)).toEqual(['too_large'])
  })
})
