import { describe, expect, it } from 'vitest'
import { formatPeriod, normaliseLimit, parseDuration, parseLimitString } from '../../lib/limits/limit.js'

describe('limit strings', () => {
  it.each([
    ['10/minute', 10, 60_000],
    ['10/minutes', 10, 60_000],
    ['1/second', 1, 1_000],
    ['100/15 minutes', 100, 900_000],
    [' 5 / 2 hours ', 5, 7_200_000],
    ['200/day', 200, 86_400_000],
    ['7/3 Days', 7, 259_200_000],
    // every spelling a `per` duration takes
    ['10/min', 10, 60_000],
    ['10/1m', 10, 60_000],
    ['100/15m', 100, 900_000],
    ['5/30s', 5, 30_000],
    ['10/2h', 10, 7_200_000],
    ['1000/1d', 1000, 86_400_000],
    ['3/sec', 3, 1_000],
    ['50/1 week', 50, 604_800_000],
    ['20/500ms', 20, 500],
    [' 4 / 90 secs ', 4, 90_000],
  ])('reads %j', (text, max, perMs) => {
    expect(parseLimitString(text)).toEqual({ max, perMs })
  })

  it.each(['', '10', '10/', '/minute', '0/minute', '-1/minute', '1.5/minute', '10/mintue', '10/0 minutes', '10/minute/2', 'ten/minute',
    '10/60', '10/0s', '10/1 year', '10/5mh', '10/1e3ms', '10/0.0001ms', '10/1 5s', `10/${'1'.repeat(5000)}m`])(
    'rejects %j', (text) => {
      expect(parseLimitString(text)).toBeUndefined()
    })

  it.each([
    ['10/minute', '10/minute'], ['10/min', '10/minute'], ['10/1m', '10/minute'], ['10/minutes', '10/minute'],
    ['100/15 minutes', '100/15 minutes'], ['100/15m', '100/15 minutes'], ['5/30s', '5/30 seconds'], ['10/2h', '10/2 hours'],
    ['1000/1d', '1000/day'], ['200/day', '200/day'], ['20/500ms', '20/500ms'],
  ])('names %j as %j, one normal form for every spelling', (text, name) => {
    expect(normaliseLimit(text)).toMatchObject({ name })
  })

  it('says which forms it reads', () => {
    expect(normaliseLimit('10/mintue')).toEqual({
      path: '',
      expected: "a limit like '10/minute', '10/min', '100/15 minutes' or '100/15m' (a count, '/', then a duration such as 'second', '30s', '2 hours' or '1d')",
    })
  })
})

describe('durations', () => {
  it.each([
    ['1 minute', 60_000], ['30s', 30_000], ['15 minutes', 900_000], ['500ms', 500], ['2h', 7_200_000],
    ['1d', 86_400_000], ['hour', 3_600_000], ['1.5s', 1_500], ['10 sec', 10_000],
    [' 2 Minutes ', 120_000], ['3\tdays', 259_200_000], ['1 week', 604_800_000], ['2w', 1_209_600_000], ['1.5 minutes', 90_000],
  ])('reads %j', (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  it.each(['', 'soon', '1 fortnight', '0s', '-1s', '0.0001ms', '1e3ms', '500', '1 5s', '1 year', '2y', 'yr', '5mh', '1dy', '1.0005s', `${'1'.repeat(5000)}x`])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined()
  })

  it('formats periods in words', () => {
    expect([60_000, 900_000, 1_000, 86_400_000, 1_500].map(formatPeriod)).toEqual(['minute', '15 minutes', 'second', 'day', '1500ms'])
  })
})

describe('limit objects', () => {
  it('default burst to max and derive a name', () => {
    expect(normaliseLimit({ max: 10, per: '1 minute' })).toEqual({ name: '10/minute', max: 10, perMs: 60_000, burst: 10 })
    expect(normaliseLimit({ max: 10, per: 60_000, burst: 3 })).toEqual({ name: '10/minute burst 3', max: 10, perMs: 60_000, burst: 3 })
    expect(normaliseLimit({ max: 10, per: '1h', name: 'hourly' })).toMatchObject({ name: 'hourly' })
  })

  it('say where an object is wrong', () => {
    expect(normaliseLimit({ max: 10, per: 'soon' })).toMatchObject({ path: '.per' })
    expect(normaliseLimit({ max: 10, per: 1.5 })).toMatchObject({ path: '.per' })
    expect(normaliseLimit({ max: 10, per: '1m', name: 'has "quotes"' })).toMatchObject({ path: '.name' })
    expect(normaliseLimit({ max: 10, per: '1m', name: '' })).toMatchObject({ path: '.name' })
  })
})
