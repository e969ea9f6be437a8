/**
 * Coalesced decisions: every decision asked of a remote store in one turn of the event
 * loop waits for the end of that turn (`setImmediate`: after every ready socket was read),
 * then travels with the others bound for the same node in one script call; while a call
 * to that node is out, newer decisions gather until it comes back. One call per node
 * instead of one per request: one TIME, one read of the keys, one round trip, one reply
 * to parse. Each decision stays all-or-nothing over its own buckets, decided in the order asked.
 */
import { FST_GCRA_STORE_REPLY, FST_GCRA_STORE_TIMEOUT, describe } from '../errors.js'
import type { StoreReply } from './contract.js'

/**
 * One decision waiting for its call. The coalescer calls `resolve` or `reject` exactly once,
 * at the latest `timeoutMs` after the decision was asked (`reject` in a microtask of its
 * own); neither may throw.
 */
export interface Waiting {
  /** performance.now() when it was asked; set by the coalescer. */
  askedAtMs?: number
  /** Answered (a reply, an error or the timeout): set by the coalescer; what comes later is ignored. */
  answered?: boolean
  readonly keys: readonly string[]
  readonly capacitiesUs: readonly number[]
  readonly incrementsUs: readonly number[]
  readonly charge: boolean
  /** How far past its capacities a stored TAT is read as it is (see `BucketStore.decide`); default 0. */
  readonly slackUs?: number
  resolve (reply: StoreReply): void
  reject (error: unknown): void
}

/** Bounds of one call: decisions, keys (Lua's unpack has a stack limit) and key bytes. */
export const MAX_DECISIONS = 256
export const MAX_KEYS = 1024
export const MAX_KEY_BYTES = 64 * 1024

/** Sends one call for `node`: the keys of every decision, then ARGV from m on; answers the script's reply. */
export type Send = (node: string, keys: string[], argv: Array<string | number>) => Promise<unknown>

export interface CoalescerOptions {
  /** After this long a call no longer holds its node's turn, answered or not (a hung server must not stall the queue). */
  readonly releaseMs?: number
  /**
   * The store timeout: a decision not answered this long after it was asked fails with
   * FST_GCRA_STORE_TIMEOUT, sent or not; one still waiting then is never sent.
   */
  readonly timeoutMs?: number
}

export class Coalescer {
  readonly #send: Send
  readonly #releaseMs: number
  readonly #timeoutMs: number
  /** Decisions waiting, by node, in the order asked. */
  readonly #waiting = new Map<string, Waiting[]>()
  /**
   * Calls out, by node: one at a time, so decisions asked while a call is out wait for it
   * and leave together (at low load nothing waits; under load calls grow).
   */
  readonly #inFlight = new Map<string, number>()
  /** A timer per node whose decisions wait for a turn: the oldest one's deadline. */
  readonly #watching = new Map<string, NodeJS.Timeout>()
  #scheduled = false

  constructor (send: Send, options: CoalescerOptions = {}) {
    this.#send = send
    this.#timeoutMs = options.timeoutMs ?? 100
    this.#releaseMs = options.releaseMs ?? this.#timeoutMs / 2
  }

  add (node: string, decision: Waiting): void {
    decision.askedAtMs = performance.now()
    let list = this.#waiting.get(node)
    if (list === undefined) this.#waiting.set(node, list = [])
    list.push(decision)
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.#flushAll())
    }
  }

  /** Send what waits for `node` now, whatever is out (a delete must follow what was asked before it). */
  flush (node: string): void {
    this.#flushNode(node, true)
  }

  #flushAll (): void {
    this.#scheduled = false
    for (const node of [...this.#waiting.keys()]) this.#flushNode(node, false)
  }

  /**
   * Fail the decisions of `node` that waited the store timeout unsent: each was answered
   * without the store already (onStoreError), and sending it now would charge a request
   * that was not let through. Answers what is left waiting.
   */
  #expire (node: string): Waiting[] | undefined {
    const list = this.#waiting.get(node)
    if (list === undefined) return undefined
    const stale = failLate(list, 0, this.#timeoutMs)
    if (stale === 0) return list
    if (stale === list.length) {
      this.#waiting.delete(node)
      this.#unwatch(node)
      return undefined
    }
    list.splice(0, stale)
    return list
  }

  /** Send what waits for `node`, in calls within the bounds, while it has a turn free. */
  #flushNode (node: string, force: boolean): void {
    const list = this.#expire(node)
    if (list === undefined) return
    let start = 0
    while (start < list.length && (force || !this.#inFlight.has(node))) {
      let end = start
      let keys = 0
      let bytes = 0
      // at least one decision per call, however large
      do {
        const d = list[end]!
        keys += d.keys.length
        for (const key of d.keys) bytes += key.length
        end++
      } while (end < list.length && end - start < MAX_DECISIONS && keys + list[end]!.keys.length <= MAX_KEYS && bytes < MAX_KEY_BYTES)
      this.#call(node, list.slice(start, end))
      start = end
    }
    if (start === list.length) {
      this.#waiting.delete(node)
      this.#unwatch(node)
      return
    }
    if (start > 0) list.splice(0, start)
    // some wait for a turn: they fail at their deadline if none comes by then
    this.#watch(node, list[0]!.askedAtMs!)
  }

  /** Wake at the deadline of `node`'s oldest waiting decision (a timer for the node, not per decision). */
  #watch (node: string, askedAtMs: number): void {
    if (this.#watching.has(node)) return
    const timer = setTimeout(() => {
      this.#watching.delete(node)
      const left = this.#expire(node)
      if (left !== undefined) this.#watch(node, left[0]!.askedAtMs!)
    }, this.#untilLate(askedAtMs))
    this.#watching.set(node, timer)
  }

  /** ms until a decision's deadline (at least 1: a timer may fire a little early, and then looks again). */
  #untilLate (askedAtMs: number): number {
    return Math.max(1, Math.ceil(askedAtMs + this.#timeoutMs - performance.now()))
  }

  #unwatch (node: string): void {
    const timer = this.#watching.get(node)
    if (timer === undefined) return
    clearTimeout(timer)
    this.#watching.delete(node)
  }

  /** A call went out: it holds a turn of its node until it is answered or `releaseMs` passed. */
  #taken (node: string): () => void {
    this.#inFlight.set(node, (this.#inFlight.get(node) ?? 0) + 1)
    let held = true
    const release = (): void => {
      if (!held) return
      held = false
      clearTimeout(timer)
      const left = (this.#inFlight.get(node) ?? 1) - 1
      if (left === 0) this.#inFlight.delete(node)
      else this.#inFlight.set(node, left)
      this.#flushNode(node, false)
    }
    const timer = setTimeout(release, this.#releaseMs)
    return release
  }

  #call (node: string, batch: readonly Waiting[]): void {
    const { keys, argv } = encode(batch)
    let sent: Promise<unknown>
    try {
      sent = this.#send(node, keys, argv)
    } catch (error) {
      for (const d of batch) fail(d, error)
      return
    }
    const release = this.#taken(node)
    // one timer for the call: each decision fails at its own deadline (they were asked in
    // order, so the next one to fail is the oldest still unanswered)
    let next = 0
    const expire = (): void => {
      next = failLate(batch, next, this.#timeoutMs)
      if (next < batch.length) deadline = setTimeout(expire, this.#untilLate(batch[next]!.askedAtMs!))
    }
    let deadline = setTimeout(expire, this.#untilLate(batch[0]!.askedAtMs!))
    // a call is never sent again: a failure is every one of its decisions' failure
    sent.then((reply) => {
      try {
        answer(batch, reply)
        // (were a callback to throw, the decisions after it would still fail at their deadlines)
        clearTimeout(deadline)
      } finally {
        release()
      }
    }, (error: unknown) => {
      clearTimeout(deadline)
      for (const d of batch) fail(d, error)
      release()
    })
  }
}

/**
 * Fail with FST_GCRA_STORE_TIMEOUT, from `from` on, the decisions of `list` whose deadline
 * has passed (they were asked in this order, so the late ones come first); answers the
 * index of the first one still in time.
 */
function failLate (list: readonly Waiting[], from: number, timeoutMs: number): number {
  const expired = performance.now() - timeoutMs
  let i = from
  let late: Error | undefined
  while (i < list.length && list[i]!.askedAtMs! <= expired) fail(list[i++]!, late ??= new FST_GCRA_STORE_TIMEOUT(timeoutMs))
  return i
}

/**
 * Fail a decision once. Its callback runs in a microtask: what it starts (a request's
 * answer, user code that resets a caller and so flushes a node) never runs inside the
 * coalescer's own loops over a node's list.
 */
function fail (d: Waiting, error: unknown): void {
  if (d.answered === true) return
  d.answered = true
  queueMicrotask(() => { d.reject(error) })
}

/**
 * A call's arguments: every decision's keys, in order; then ARGV: m, the bucket lists
 * (slack, capacities and increments, each sent once however many decisions use it: a
 * route's fixed cost is one list), and per decision the index of its list and its mode.
 */
export function encode (batch: readonly Waiting[]): { keys: string[], argv: Array<string | number> } {
  const keys: string[] = []
  const lists = new Map<readonly number[], Map<readonly number[], Map<number, number>>>()
  const listArgs: Array<string | number> = []
  const decisionArgs: Array<string | number> = []
  let count = 0
  for (const d of batch) {
    let byIncrements = lists.get(d.capacitiesUs)
    if (byIncrements === undefined) lists.set(d.capacitiesUs, byIncrements = new Map())
    let bySlack = byIncrements.get(d.incrementsUs)
    if (bySlack === undefined) byIncrements.set(d.incrementsUs, bySlack = new Map())
    const slack = d.slackUs ?? 0
    let index = bySlack.get(slack)
    if (index === undefined) {
      bySlack.set(slack, index = ++count)
      const n = d.keys.length
      listArgs.push(n, slack)
      for (let i = 0; i < n; i++) listArgs.push(d.capacitiesUs[i]!, d.incrementsUs[i]!)
    }
    for (const key of d.keys) keys.push(key)
    decisionArgs.push(index, d.charge ? '1' : '0')
  }
  return { keys, argv: [batch.length, count, ...listArgs, ...decisionArgs] }
}

/** Hand each decision its part of the reply: { now, then per decision allowed, tat_1..tat_n }. */
export function answer (batch: readonly Waiting[], reply: unknown): void {
  let expected = 1
  for (const d of batch) expected += 1 + d.keys.length
  if (!Array.isArray(reply) || reply.length !== expected || !reply.every(v => typeof v === 'number')) {
    const error = new FST_GCRA_STORE_REPLY(describe(reply))
    for (const d of batch) fail(d, error)
    return
  }
  const values = reply as number[]
  const nowUs = values[0]!
  let at = 1
  for (const d of batch) {
    const n = d.keys.length
    if (d.answered !== true) {
      d.answered = true
      d.resolve({ allowed: values[at] === 1, nowUs, tatsUs: values.slice(at + 1, at + 1 + n) })
    }
    at += 1 + n
  }
}
