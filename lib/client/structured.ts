/**
 * A strict reader of RFC 8941 structured-field Lists, enough for the IETF RateLimit
 * fields: items with parameters. What is malformed yields undefined, never an exception,
 * so a client ignores a broken field instead of failing the call.
 */

export type BareItem = number | string | boolean | Uint8Array | Token

/** An sf-token (unquoted), kept apart from an sf-string. */
export class Token {
  constructor (readonly value: string) {}
}

export interface ListItem {
  readonly value: BareItem
  readonly params: ReadonlyMap<string, BareItem>
}

class Reader {
  i = 0
  constructor (readonly s: string) {}
  peek (): string { return this.s[this.i] ?? '' }
  done (): boolean { return this.i >= this.s.length }
  skip (chars: string): void { while (!this.done() && chars.includes(this.peek())) this.i++ }
}

const KEY_FIRST = /[a-z*]/
const KEY_REST = /[a-z0-9_\-.*]/
const TOKEN_FIRST = /[A-Za-z*]/
const TOKEN_REST = /[!#$%&'*+\-.^_`|~0-9A-Za-z:/]/

function bareItem (r: Reader): BareItem | undefined {
  const c = r.peek()
  if (c === '-' || (c >= '0' && c <= '9')) return number(r)
  if (c === '"') return string(r)
  if (c === ':') return bytes(r)
  if (c === '?') return boolean(r)
  if (TOKEN_FIRST.test(c)) {
    const start = r.i
    r.i++
    while (!r.done() && TOKEN_REST.test(r.peek())) r.i++
    return new Token(r.s.slice(start, r.i))
  }
  return undefined
}

function number (r: Reader): number | undefined {
  const m = /^-?(\d{1,15})(\.(\d{1,3}))?/.exec(r.s.slice(r.i))
  if (m === null) return undefined
  // RFC 8941: an integer has at most 15 digits; a decimal at most 12 before the point
  if (m[2] !== undefined && m[1]!.length > 12) return undefined
  if (m[2] === '.' || (m[2] !== undefined && m[3] === undefined)) return undefined
  const next = r.s[r.i + m[0].length]
  if (next !== undefined && ((next >= '0' && next <= '9') || next === '.')) return undefined
  r.i += m[0].length
  return Number(m[0])
}

function string (r: Reader): string | undefined {
  r.i++ // opening quote
  let out = ''
  while (!r.done()) {
    const c = r.s[r.i++]!
    if (c === '\\') {
      const e = r.s[r.i++]
      if (e !== '"' && e !== '\\') return undefined
      out += e
    } else if (c === '"') {
      return out
    } else {
      const code = c.charCodeAt(0)
      if (code < 0x20 || code > 0x7e) return undefined
      out += c
    }
  }
  return undefined
}

function bytes (r: Reader): Uint8Array | undefined {
  const end = r.s.indexOf(':', r.i + 1)
  if (end === -1) return undefined
  const b64 = r.s.slice(r.i + 1, end)
  // whole groups of four, the last one possibly padded (or left unpadded): anything else does not decode
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/.test(b64)) return undefined
  r.i = end + 1
  return Uint8Array.from(Buffer.from(b64, 'base64'))
}

function boolean (r: Reader): boolean | undefined {
  const c = r.s[r.i + 1]
  if (c !== '0' && c !== '1') return undefined
  r.i += 2
  return c === '1'
}

function params (r: Reader): Map<string, BareItem> | undefined {
  const out = new Map<string, BareItem>()
  while (r.peek() === ';') {
    r.i++
    r.skip(' ')
    if (!KEY_FIRST.test(r.peek())) return undefined
    const start = r.i
    while (!r.done() && KEY_REST.test(r.peek())) r.i++
    const key = r.s.slice(start, r.i)
    let value: BareItem | undefined = true
    if (r.peek() === '=') {
      r.i++
      value = bareItem(r)
      if (value === undefined) return undefined
    }
    out.set(key, value)
  }
  return out
}

/** Parse an sf-list whose members are items (inner lists are rejected); undefined if malformed. */
export function parseList (field: string | null | undefined): ListItem[] | undefined {
  if (field === null || field === undefined) return undefined
  const r = new Reader(field)
  r.skip(' ')
  const items: ListItem[] = []
  if (r.done()) return items
  for (;;) {
    const value = bareItem(r)
    if (value === undefined) return undefined
    const p = params(r)
    if (p === undefined) return undefined
    items.push({ value, params: p })
    r.skip(' \t')
    if (r.done()) return items
    if (r.peek() !== ',') return undefined
    r.i++
    r.skip(' \t')
    if (r.done()) return undefined // trailing comma
  }
}
