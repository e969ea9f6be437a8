import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { parseList, Token } from '../../lib/client/structured.js'

const plain = (field: string) => parseList(field)?.map(i => [i.value instanceof Token ? `token:${i.value.value}` : i.value, Object.fromEntries(i.params)])

describe('structured-field lists', () => {
  it('read strings, tokens, numbers, booleans, byte sequences and parameters', () => {
    expect(plain('"10/minute";q=10;w=60, "global 200/day";q=200;w=86400')).toEqual([
      ['10/minute', { q: 10, w: 60 }], ['global 200/day', { q: 200, w: 86400 }],
    ])
    expect(plain('default;r=0;t=6')).toEqual([['token:default', { r: 0, t: 6 }]])
    expect(plain('"a\\"b";x=-1.5;flag;y=?0;z=:aGk=:')).toEqual([['a"b', { x: -1.5, flag: true, y: false, z: Uint8Array.from([104, 105]) }]])
    expect(plain('  1 ,\t2  ')).toEqual([[1, {}], [2, {}]])
    expect(plain('')).toEqual([])
    // '@' and '%"' inside strings are text, not RFC 9651 items
    expect(plain('"a@b";n="50%", "q=%";q=1')).toEqual([['a@b', { n: '50%' }], ['q=%', { q: 1 }]])
  })

  it.each([
    ['"unterminated', 'an unterminated string'],
    ['"a",', 'a trailing comma'],
    ['"a" "b"', 'two items without a comma'],
    ['"a";Q=1', 'an uppercase parameter key'],
    ['"a";q=', 'a parameter without a value'],
    ['"a";q=1.', 'a decimal without digits'],
    ['1234567890123456', 'an integer of 16 digits'],
    ['"tab\there"', 'a control character in a string'],
    ['"é"', 'a non-ASCII string'],
    ['("a" "b")', 'an inner list'],
    ['"a";q="\\n"', 'a bad escape'],
    ['?2', 'a bad boolean'],
    [':not base64!:', 'a bad byte sequence'],
    [':a:', 'base64 that cannot decode'],
    [':==:', 'padding without data'],
    ['@1659578233', 'an RFC 9651 date'],
    ['"a";d=%"b"', 'an RFC 9651 display string'],
    ['"a";x=%"b";x=1', 'a display string that a duplicate key overwrites'],
  ])('reject %j (%s) without throwing', (field) => {
    expect(parseList(field)).toBeUndefined()
  })

  it('never throws on arbitrary input', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (s) => {
      const r = parseList(s)
      expect(r === undefined || Array.isArray(r)).toBe(true)
    }), { numRuns: 2000, seed: 7 })
  })
})
