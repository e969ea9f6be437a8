import { afterEach, describe, expect, it, vi } from 'vitest'
import { Deadlines, withTimeout, within } from '../../lib/util/timeout.js'

afterEach(() => { vi.useRealTimers() })

describe('deadlines of one duration on one timer', () => {
  it('end each call that has no answer after the duration, in order, and leave the answered ones alone', async () => {
    vi.useFakeTimers()
    const deadlines = new Deadlines(100)
    const never = new Promise<string>(() => {})
    let answer!: (v: string) => void
    const answered = new Promise<string>(resolve => { answer = resolve })
    const late = (): string => 'late'
    const a = deadlines.race(never, late)
    await vi.advanceTimersByTimeAsync(40)
    const b = deadlines.race(answered, late)
    const c = deadlines.race(never, () => { throw new Error('timed out') })
    answer('on time')
    await expect(b).resolves.toBe('on time')
    const settled: string[] = []
    void a.then(v => settled.push(`a ${v}`))
    void c.catch((e: Error) => settled.push(`c ${e.message}`))
    await vi.advanceTimersByTimeAsync(59)
    expect(settled).toEqual([])
    await vi.advanceTimersByTimeAsync(2)
    expect(settled).toEqual(['a late'])
    await vi.advanceTimersByTimeAsync(40)
    expect(settled).toEqual(['a late', 'c timed out'])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('keep one timer for many calls', () => {
    vi.useFakeTimers()
    const deadlines = new Deadlines(100)
    for (let i = 0; i < 1000; i++) void deadlines.race(new Promise(() => {}), () => 0)
    expect(vi.getTimerCount()).toBe(1)
  })

  it('pass a rejection through', async () => {
    await expect(new Deadlines(1000).race(Promise.reject(new Error('no')), () => 'late')).rejects.toThrow('no')
  })
})

describe('one-off timeouts', () => {
  it('answer late() after the time, or the promise before it', async () => {
    await expect(withTimeout(new Promise(() => {}), 5, () => 'late')).resolves.toBe('late')
    await expect(withTimeout(Promise.resolve('now'), 1000, () => 'late')).resolves.toBe('now')
  })

  it('never reject a start-up wait', async () => {
    await expect(within(Promise.reject(new Error('down')), 1000)).resolves.toBeUndefined()
    await expect(within(new Promise(() => {}), 5)).resolves.toBeUndefined()
  })
})
