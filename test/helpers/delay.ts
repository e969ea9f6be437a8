/**
 * For the tests of `delay` in real time: bounded waits, metric samples, and a burst of one
 * caller's requests with what each one got and when it ended (on the client's clock).
 */
import type { FastifyInstance } from 'fastify'
import { expect } from 'vitest'
import type { RateLimitInfo } from '../../lib/index.js'
import { sample } from './metrics.js'

export const tick = (ms = 20): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Wait until `check` holds, for at most `ms`. */
export async function eventually (check: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not reached in time')
    await tick(10)
  }
}


/** One sample of the app's `/metrics`. */
export async function metric (app: FastifyInstance, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const r = await app.inject('/metrics')
  expect(r.statusCode).toBe(200)
  return sample(r.body, name, labels)
}

export interface Answer {
  status: number
  retryAfter: string | undefined
  /** The handler's `request.rateLimit` (admitted requests only). */
  info: RateLimitInfo | undefined
  /** Which app answered (index in `apps`). */
  app: number
  /** ms from the burst's start to the response, on the client's clock. */
  doneAt: number
}

/**
 * `n` requests of `caller` fired at once, alternating between `apps`, on a route whose
 * handler returns `request.rateLimit`. `onRefusals(k)` runs once the k-th refusal is back.
 */
export async function burst (apps: FastifyInstance[], url: string, caller: string, n: number, refusals = 0, onRefusals?: () => void): Promise<Answer[]> {
  const start = performance.now()
  let refused = 0
  return await Promise.all(Array.from({ length: n }, async (_, i) => {
    const app = i % apps.length
    const res = await apps[app]!.inject({ url, headers: { 'x-caller': caller } })
    const doneAt = performance.now() - start
    if (res.statusCode === 429 && ++refused === refusals) onRefusals?.()
    return {
      status: res.statusCode,
      retryAfter: res.headers['retry-after'] as string | undefined,
      info: res.statusCode === 200 ? res.json() as RateLimitInfo : undefined,
      app,
      doneAt,
    }
  }))
}
