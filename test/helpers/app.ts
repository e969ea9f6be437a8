/**
 * Apps for HTTP tests: one per test, against each store, closed after the test (with
 * its Redis client), with the log lines it wrote.
 */
import Fastify, { type FastifyInstance, type InjectOptions } from 'fastify'
import { Writable } from 'node:stream'
import { afterEach } from 'vitest'
import gcra, { type FastifyGcraOptions } from '../../lib/index.js'
import { hasRedis, randomPrefix, redisClient } from './redis.js'

export interface StoreCase {
  name: 'memory' | 'redis'
  /** Plugin options selecting this store (a fresh Redis client and key prefix each call). */
  options: () => Partial<FastifyGcraOptions>
}

export const memoryCase: StoreCase = { name: 'memory', options: () => ({ store: 'memory' }) }
export const redisCase: StoreCase = {
  name: 'redis',
  options: () => ({ store: { redis: redisClient() }, prefix: randomPrefix() }),
}

/** Every store the HTTP behaviour is proven against. Redis is absent only off CI, loudly (see test/setup). */
export const storeCases: StoreCase[] = hasRedis ? [memoryCase, redisCase] : [memoryCase]

export interface LogLine {
  level: number
  msg: string
  err?: { type?: string, message?: string, code?: string }
  [key: string]: unknown
}

const apps = new Set<FastifyInstance>()

afterEach(async () => {
  const open = [...apps]
  apps.clear()
  await Promise.all(open.map(a => a.close()))
})

/** A Fastify app (closed after the test) whose log lines are collected in `logs`. */
export function newApp (): FastifyInstance & { logs: LogLine[] } {
  const logs: LogLine[] = []
  const stream = new Writable({
    write (chunk, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogLine)
      done()
    },
  })
  const app = Fastify({ logger: { level: 'info', stream } }) as unknown as FastifyInstance & { logs: LogLine[] }
  app.logs = logs
  apps.add(app)
  return app
}

/** An app with the plugin registered on `store` and `options`. */
export async function appWith (store: StoreCase, options: Partial<FastifyGcraOptions> = {}): Promise<FastifyInstance & { logs: LogLine[] }> {
  const app = newApp()
  await app.register(gcra, { ...store.options(), ...options })
  return app
}

/** Status codes of `n` requests made one after another. */
export async function statuses (app: FastifyInstance, n: number, request: InjectOptions | string): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push((await app.inject(request)).statusCode)
  return out
}

export const ok = async (): Promise<{ ok: true }> => ({ ok: true })
