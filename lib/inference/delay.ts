/**
 * Shaping instead of refusing (`delay`): a request the store admitted past its capacity
 * (within the route's delay) is held here until its slot, then served. The hold is the
 * store's decision (the TATs it wrote, on its clock), never a local guess. `maxDelayed`
 * bounds the requests held at once: a request refused without delay takes a place before
 * it is decided again with the delay, so decisions in flight can never hold more than that.
 */
import type { FastifyReply } from 'fastify'

export interface HoldObserver {
  /** A hold ended after `ms`: served (`gone` false) or its client left (`gone` true). */
  held(ms: number, gone: boolean): void
}

export class Holds {
  readonly #max: number
  /** Requests held now, and places taken by decisions not yet answered. */
  #held = 0
  #reserved = 0
  /** Places shadow mode keeps for as long as enforcement would have held their requests. */
  #shadowed = 0
  readonly #observers: HoldObserver[] = []

  constructor (maxDelayed: number) {
    this.#max = maxDelayed
  }

  /** Requests held now. */
  get held (): number {
    return this.#held
  }

  observe (observer: HoldObserver): void {
    this.#observers.push(observer)
  }

  /** Take a place for a decision that may hold its request; false: none left (the request stays refused). */
  reserve (): boolean {
    if (this.#held + this.#reserved + this.#shadowed >= this.#max) return false
    this.#reserved++
    return true
  }

  /** Give back a place its decision did not use. */
  unreserve (): void {
    this.#reserved--
  }

  /**
   * Shadow mode: nothing is held, but the reserved place stays taken for `ms`, as the held
   * request would have kept it, so later decisions find the places enforcement would leave.
   */
  keepFor (ms: number): void {
    this.#reserved--
    this.#shadowed++
    setTimeout(() => { this.#shadowed-- }, ms).unref()
  }

  /**
   * Hold a request (in its reserved place) for `ms`. Resolves true once served may go on,
   * or false when the client went away first: then `gone` runs (refund the charge) and the
   * request is never served.
   */
  hold (reply: FastifyReply, ms: number, gone: () => void): Promise<boolean> {
    this.#reserved--
    this.#held++
    const raw = reply.raw
    const started = performance.now()
    return new Promise<boolean>((resolve) => {
      const end = (served: boolean): void => {
        clearTimeout(timer)
        raw.off('close', left)
        this.#held--
        resolve(served)
        const waited = performance.now() - started
        for (const o of this.#observers) o.held(waited, !served)
      }
      const left = (): void => {
        end(false)
        gone()
      }
      const timer = setTimeout(end, ms, true)
      // the client left before its slot: the charge goes back, nothing is served
      if (raw.destroyed || raw.closed) {
        queueMicrotask(left)
        return
      }
      raw.once('close', left)
    })
  }
}
