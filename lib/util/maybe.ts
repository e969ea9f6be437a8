/**
 * Values that may or may not be promises. The memory store answers synchronously, so a
 * request on it goes through every hook without a promise; a remote store's answer is one.
 */

export type MaybePromise<T> = T | Promise<T>

export function isThenable<T> (value: MaybePromise<T> | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | null)?.then === 'function'
}

/** `next(value)`, at once when `value` is not a promise. */
export function andThen<T, R> (value: T | PromiseLike<T>, next: (value: T) => R | PromiseLike<R>): R | Promise<R> {
  return isThenable(value) ? Promise.resolve(value).then(next) : next(value as T) as R | Promise<R>
}
