/** Redis for tests: the URL the global setup started, and clients closed after each test. */
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterEach, inject } from 'vitest'

export const redisUrl: string = inject('redisUrl')
export const hasRedis = redisUrl !== ''

/** A random key prefix, so tests share one server without FLUSHALL. */
export function randomPrefix (): string {
  return `t${randomBytes(6).toString('hex')}`
}

const open = new Set<Redis>()

/** A client closed after the current test. */
export function redisClient (): Redis {
  const client = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1 })
  open.add(client)
  return client
}

afterEach(async () => {
  const clients = [...open]
  open.clear()
  await Promise.all(clients.map(c => c.quit().catch(() => c.disconnect())))
})
