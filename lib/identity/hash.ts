/**
 * Identities: the default key (client IP, IPv6 grouped by /64) and the hash that turns
 * any identity into a short, fixed-length, opaque piece of a store key.
 */
import crypto from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'

/** The 16-bit groups of an IPv6 address (8 of them), or undefined. */
function hextets (address: string): number[] | undefined {
  const zone = address.indexOf('%')
  let text = zone === -1 ? address : address.slice(0, zone)
  // an embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups
  const lastColon = text.lastIndexOf(':')
  const tail = text.slice(lastColon + 1)
  if (tail.includes('.')) {
    const octets = tail.split('.').map(Number)
    text = `${text.slice(0, lastColon + 1)}${((octets[0]! << 8) | octets[1]!).toString(16)}:${((octets[2]! << 8) | octets[3]!).toString(16)}`
  }
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const head = halves[0] === '' ? [] : halves[0]!.split(':')
  const rest = halves.length === 2 ? (halves[1] === '' ? [] : halves[1]!.split(':')) : []
  const fill = halves.length === 2 ? 8 - head.length - rest.length : 0
  const groups = [...head, ...Array<string>(Math.max(0, fill)).fill('0'), ...rest].map(h => parseInt(h, 16))
  return groups.length === 8 && groups.every(g => g >= 0 && g <= 0xffff) ? groups : undefined
}

/**
 * The identity of a client address: IPv4 as is; IPv4-mapped IPv6 as its IPv4; any
 * other IPv6 as its /64 network, so a client cannot rotate through the addresses of its
 * own /64 to get fresh buckets.
 */
export function ipIdentity (ip: string): string {
  if (isIPv4(ip)) return ip
  if (!isIPv6(ip)) return ip
  const groups = hextets(ip)
  if (groups === undefined) return ip
  if (groups.slice(0, 5).every(g => g === 0) && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`
  }
  return `${groups.slice(0, 4).map(g => g.toString(16)).join(':')}::/64`
}

const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'base64url') => string }).hash

/**
 * The hash of identities for an app: SHA-256 by default; with a secret, HMAC-SHA256, so
 * that nobody without the secret can test a guess (an IPv4 address is one of only 2^32).
 */
export function identityHasher (secret: string | undefined, cacheSize = IDENTITY_CACHE): (identity: string) => string {
  const hash = secret === undefined
    ? hashIdentity
    : (identity: string) => crypto.createHmac('sha256', secret).update(identity).digest('base64url').slice(0, 22)
  // the callers of the last moments, remembered: a hash costs more than the rest of a
  // decision in memory. Emptied when full (cheaper than keeping an order), so bounded.
  const known = new Map<string, string>()
  return (identity) => {
    let hashed = known.get(identity)
    if (hashed === undefined) {
      // flat: a slice or a concatenation would keep the string it came from alive
      hashed = flat(hash(identity))
      if (known.size >= cacheSize) known.clear()
      // identities longer than a key's worth are not kept: the cache must not hold megabytes
      if (identity.length <= 256) known.set(identity, hashed)
    }
    return hashed
  }
}

/** Identities whose hash is remembered. */
const IDENTITY_CACHE = 10_000

/** A string with no reference to the strings it was cut or joined from (V8 keeps those alive otherwise). */
export function flat (text: string): string {
  return Buffer.from(text, 'utf8').toString('utf8')
}

/**
 * 128 bits of SHA-256 of an identity, base64url (22 characters): store keys stay short
 * whatever the identity, and an API key never reaches the store in clear.
 */
export function hashIdentity (identity: string): string {
  const digest = oneShot === undefined
    ? crypto.createHash('sha256').update(identity).digest('base64url')
    : oneShot('sha256', identity, 'base64url')
  return digest.slice(0, 22)
}
