/** The example ML API, listening on an ephemeral loopback port, closed after the test. */
import type { FastifyInstance } from 'fastify'
import { afterEach } from 'vitest'
// @ts-expect-error plain JavaScript without declarations
import { buildApp, LIMITS } from '../../bench/ml-api/app.js'
import type { StoreCase } from './app.js'
import { randomPrefix, redisUrl } from './redis.js'

const running = new Set<FastifyInstance>()
afterEach(async () => { await Promise.all([...running].map(a => a.close())); running.clear() })

export type DemoLimits = typeof LIMITS

/** `shadow`: as the demo's `SHADOW` variable gives it (true, or route URLs). */
export async function startDemo (store: StoreCase, limits: Partial<DemoLimits> = {}, prefix = randomPrefix(), warmupMs = 0, shadow: boolean | string[] = false): Promise<{ app: FastifyInstance, url: string }> {
  const app = await buildApp({ redisUrl: store.name === 'redis' ? redisUrl : undefined, limits: { ...LIMITS, ...limits }, prefix, warmupMs, shadow }) as FastifyInstance
  running.add(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return { app, url: `http://127.0.0.1:${port}` }
}

export const FLOWER = { input: [5.1, 3.5, 1.4, 0.2] }
