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
