/** The store's health as the logs tell it: once when an outage starts, once when it ends. */
import type { FastifyBaseLogger } from 'fastify'

export class StoreHealth {
  #failing = false
  readonly #log: FastifyBaseLogger

  constructor (log: FastifyBaseLogger) {
    this.#log = log
  }

  get failing (): boolean {
    return this.#failing
  }

  /** Returns true when this ends an outage. */
  ok (): boolean {
    if (!this.#failing) return false
    this.#failing = false
    this.#log.info('fastify-gcra: the store answers again; limiting with it resumed')
    return true
  }

  failed (error: unknown): void {
    if (this.#failing) return
    this.#failing = true
    this.#log.error({ err: error }, 'fastify-gcra: the store failed; requests follow onStoreError (allow, deny or local) until it answers again')
  }
}
