/**
 * HTTP clients that retry on 429 read our `Retry-After`: undici's RetryAgent, ky and got
 * each wait the seconds we send, then get their answer. Real sockets, one caller per client.
 */
import type { AddressInfo } from 'node:net'
import got from 'got'
import ky from 'ky'
import { Agent, RetryAgent, request } from 'undici'
import { describe, expect, it } from 'vitest'
import { newApp } from '../helpers/app.js'
import gcra from '../../lib/index.js'

/** T = 1 s, a burst of 1: a caller's second request at once is told `Retry-After: 1`. */
async function limitedServer () {
  const app = newApp()
  await app.register(gcra, { key: req => String(req.headers['x-caller']) })
  const seen: Array<{ caller: string, at: number, status?: number }> = []
  app.addHook('onRequest', async (req) => { seen.push({ caller: String(req.headers['x-caller']), at: performance.now() }) })
  app.addHook('onResponse', async (req, reply) => {
    const last = seen.filter(s => s.caller === req.headers['x-caller']).pop()
    if (last !== undefined) last.status = reply.statusCode
  })
  app.get('/r', { config: { rateLimit: { limits: [{ max: 1, per: '1s', burst: 1 }] } } }, async () => ({ ok: true }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/r`
  return { app, url, seen }
}

// each client's own back-off is cut to ≤ 50 ms: only our Retry-After can explain a wait of a second
const clients: Record<string, (url: string, caller: string) => Promise<number>> = {
  'undici RetryAgent': async (url, caller) => {
    const dispatcher = new RetryAgent(new Agent(), { maxRetries: 2, statusCodes: [429], minTimeout: 10, maxTimeout: 10_000 })
    const res = await request(url, { dispatcher, headers: { 'x-caller': caller } })
    await res.body.dump()
    return res.statusCode
  },
  ky: async (url, caller) => (await ky.get(url, { headers: { 'x-caller': caller }, retry: { limit: 2, statusCodes: [429], afterStatusCodes: [429], backoffLimit: 50 } })).status,
  got: async (url, caller) => (await got(url, { headers: { 'x-caller': caller }, retry: { limit: 2, statusCodes: [429], backoffLimit: 50 } })).statusCode,
}

describe('clients that retry read Retry-After', () => {
  it.each(Object.keys(clients))('%s waits the Retry-After we send, then is admitted', async (name) => {
    const { url, seen } = await limitedServer()
    const caller = name.replace(/\W/g, '')
    // the caller's one unit, spent
    expect((await fetch(url, { headers: { 'x-caller': caller } })).status).toBe(200)
    expect(await clients[name]!(url, caller)).toBe(200)
    const mine = seen.filter(s => s.caller === caller)
    // spent, refused (429, Retry-After: 1), retried once after the second it was told
    expect(mine.map(s => s.status)).toEqual([200, 429, 200])
    const waited = mine[2]!.at - mine[1]!.at
    expect(waited).toBeGreaterThanOrEqual(990)
    expect(waited).toBeLessThan(1800)
  })
})
