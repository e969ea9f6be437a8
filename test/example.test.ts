// The example ML API (bench/ml-api), in-process: the README's "run" command serves this.
import { describe, expect, it } from 'vitest'
import { storeCases } from './helpers/app.js'
import { startDemo } from './helpers/demo.js'
import { hasRedis, randomPrefix } from './helpers/redis.js'

const post = (url: string, payload: unknown, key?: string) => ({
  method: 'POST' as const, url, payload, headers: key === undefined ? {} : { 'x-api-key': key },
})

describe.each(storeCases)('example ML API on the $name store', (store) => {
  const demo = async () => (await startDemo(store)).app

  it('computes predictions from the model it trained', async () => {
    const app = await demo()
    const setosa = await app.inject(post('/predict', { input: [5.1, 3.5, 1.4, 0.2] }, 'demo-free-key'))
    expect(setosa.statusCode).toBe(200)
    expect(setosa.json().label).toBe('setosa')
    const virginica = await app.inject(post('/predict', { input: [6.7, 3.0, 5.2, 2.3] }, 'demo-free-key'))
    expect(virginica.json().label).toBe('virginica')
    const info = (await app.inject('/model')).json()
    expect(info.trainingAccuracy).toBeGreaterThan(0.9)
  })

  it('answers 401 to an unknown key before charging anything', async () => {
    const app = await demo()
    expect((await app.inject(post('/predict', { input: [5, 3, 1, 0] }, 'stolen'))).statusCode).toBe(401)
    const r = await app.inject(post('/predict', { input: [5, 3, 1, 0] }))
    expect(r.headers.ratelimit).toContain('"20/minute";r=19')
  })

  it('charges batches by size: 413 past what the tier admits, premium admits 5×', async () => {
    const app = await demo()
    const batch = { inputs: Array.from({ length: 25 }, () => [6.7, 3.0, 5.2, 2.3]) }
    const free = await app.inject(post('/predict/batch', batch, 'demo-free-key'))
    expect(free.statusCode).toBe(413)
    const premium = await app.inject(post('/predict/batch', batch, 'demo-premium-key'))
    expect(premium.statusCode).toBe(200)
    expect(premium.json().predictions).toHaveLength(25)
    expect(premium.headers.ratelimit).toContain('"20/minute";r=75')
  })

  it('keeps the health check exempt and the heavy route strict', async () => {
    const app = await demo()
    for (let i = 0; i < 5; i++) expect((await app.inject('/health')).headers.ratelimit).toBeUndefined()
    const codes = []
    for (let i = 0; i < 4; i++) codes.push((await app.inject(post('/predict/explain', { input: [6.1, 2.8, 4.7, 1.2] }))).statusCode)
    expect(codes).toEqual([200, 200, 200, 429])
  })
})

describe.runIf(hasRedis)('example ML API instances on one Redis', () => {
  it('share their limits', async () => {
    const prefix = randomPrefix()
    const redis = storeCases.find(s => s.name === 'redis')!
    const [a, b] = await Promise.all([startDemo(redis, {}, prefix), startDemo(redis, {}, prefix)])
    const call = (app: typeof a.app) => app.inject(post('/predict/explain', { input: [6.1, 2.8, 4.7, 1.2] }, 'demo-free-key'))
    const codes = [await call(a.app), await call(b.app), await call(a.app), await call(b.app)].map(r => r.statusCode)
    expect(codes).toEqual([200, 200, 200, 429])
  })
})

