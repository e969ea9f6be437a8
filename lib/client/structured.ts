/**
 * RFC 8941 structured-field Lists for the IETF RateLimit fields, parsed by
 * `structured-headers` and narrowed to what those fields carry: items with parameters.
 * What is malformed yields undefined, never an exception, so a client ignores a broken
 * field instead of failing the call.
 */
import { isInnerList, parseList as parseSfList, Token as SfToken, type BareItem as SfBareItem } from 'structured-headers'

export type BareItem = number | string | boolean | Uint8Array | Token

/** An sf-token (unquoted), kept apart from an sf-string. */
export class Token {
  constructor (readonly value: string) {}
}

export interface ListItem {
  readonly value: BareItem
  readonly params: ReadonlyMap<string, BareItem>
}

/** The library's bare item in our shape; undefined for any other kind (RFC 9651 Dates, Display Strings). */
function bare (v: SfBareItem): BareItem | undefined {
  if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v
  if (v instanceof SfToken) return new Token(v.toString())
  if (v instanceof ArrayBuffer) return new Uint8Array(v)
  return undefined
}

/**
 * Whether an RFC 9651 Date (`@`) or Display String (`%"`) starts outside an sf-string.
 * Neither is RFC 8941, so such a field stays rejected; reading the text, not the parsed
 * result, also catches one in a parameter that a later duplicate key overwrote.
 */
function hasRfc9651Item (field: string): boolean {
  let inString = false
  for (let i = 0; i < field.length; i++) {
    const c = field[i]
    if (inString) {
      if (c === '\\') i++
      else if (c === '"') inString = false
    } else if (c === '"') {
      inString = true
    } else if (c === '@' || (c === '%' && field[i + 1] === '"')) {
      return true
    }
  }
  return false
}

/** Parse an sf-list whose members are items (inner lists are rejected); undefined if malformed. */
export function parseList (field: string | null | undefined): ListItem[] | undefined {
  if (field === null || field === undefined || hasRfc9651Item(field)) return undefined
  let members: ReturnType<typeof parseSfList>
  try {
    members = parseSfList(field)
  } catch {
    // a ParseError (or any other throw): the field is ignored, the call goes on
    return undefined
  }
  const items: ListItem[] = []
  for (const member of members) {
    if (isInnerList(member)) return undefined
    const value = bare(member[0])
    if (value === undefined) return undefined
    const params = new Map<string, BareItem>()
    for (const [key, param] of member[1]) {
      const v = bare(param)
      if (v === undefined) return undefined
      params.set(key, v)
    }
    items.push({ value, params })
  }
  return items
}
