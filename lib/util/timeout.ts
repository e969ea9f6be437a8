/** The one deadline helper: store calls, start-up waits and shutdown all go through it. */

/**
 * `promise`'s outcome, or `late()`'s once `ms` have passed without one (`late` may throw:
 * the result then rejects). The promise itself goes on; its later outcome is ignored.
 */
export function withTimeout<T, L> (promise: PromiseLike<T>, ms: number, late: () => L): Promise<T | L> {
  return new Promise<T | L>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        resolve(late())
      } catch (error) {
        reject(error)
      }
    }, ms)
    promise.then(
      (value) => { clearTimeout(timer); resolve(value) },
      (error: unknown) => { clearTimeout(timer); reject(error) },
    )
  })
}

/** Wait for `promise` to settle, but at most `ms`; never rejects (start-up checks that must not hold the app). */
export async function within (promise: PromiseLike<unknown>, ms: number): Promise<void> {
  await withTimeout(Promise.resolve(promise).then(() => undefined, () => undefined), ms, () => undefined)
}

interface Deadline {
  readonly atMs: number
  late: (() => void) | undefined
}

/**
 * Deadlines of one duration, on one timer: they end in the order they begin, so a queue
 * and a timer for its head replace a setTimeout and a clearTimeout per store call.
 */
export class Deadlines {
  readonly #ms: number
  #queue: Deadline[] = []
  #head = 0
  #timer: NodeJS.Timeout | undefined

  constructor (ms: number) {
    this.#ms = ms
  }

  /**
   * `promise`'s outcome, or `late()`'s once the duration has passed without one (`late`
   * may throw: the result then rejects). The promise itself goes on.
   */
  race<T, L> (promise: PromiseLike<T>, late: () => L): Promise<T | L> {
    return new Promise<T | L>((resolve, reject) => {
      const deadline: Deadline = {
        atMs: performance.now() + this.#ms,
        late: () => {
          try {
            resolve(late())
          } catch (error) {
            reject(error)
          }
        },
      }
      this.#queue.push(deadline)
      if (this.#timer === undefined) this.#timer = setTimeout(() => this.#fire(), this.#ms)
      promise.then(
        (value) => { deadline.late = undefined; resolve(value) },
        (error: unknown) => { deadline.late = undefined; reject(error) },
      )
    })
  }

  #fire (): void {
    this.#timer = undefined
    const now = performance.now()
    const queue = this.#queue
    while (this.#head < queue.length && queue[this.#head]!.atMs <= now) {
      const deadline = queue[this.#head++]!
      const late = deadline.late
      deadline.late = undefined
      late?.()
    }
    if (this.#head === queue.length) {
      this.#queue = []
      this.#head = 0
      return
    }
    if (this.#head > 1024 && this.#head * 2 > queue.length) {
      this.#queue = queue.slice(this.#head)
      this.#head = 0
    }
    this.#timer = setTimeout(() => this.#fire(), Math.max(1, Math.ceil(this.#queue[this.#head]!.atMs - now)))
  }
}
