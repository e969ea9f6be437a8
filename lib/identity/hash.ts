/**
 * Identities: the default key (client IP, IPv6 grouped by /64) and the hash that turns
 * any identity into a short, fixed-length, opaque piece of a store key.
 */
import crypto from 'node:crypto'
import { isIPv4, isIPv6 } from 'node:net'
import ipaddr from 'ipaddr.js'
import { RecentMap } from '../util/bounded.js'

/**
 * The identity of a client address: IPv4 as is; IPv4-mapped IPv6 as its IPv4; any
 * other IPv6 as its /64 network, so a client cannot rotate through the addresses of its
 * own /64 to get fresh buckets.
 */
export function ipIdentity (ip: string): string {
  // IPv4 kept on node:net, by measure: 30-55 ns a call, 440-620 ns with ipaddr.js (tinybench, Node 20)
  if (isIPv4(ip)) return ip
  // node:net decides what is an address, as before: ipaddr.js would also read hex and octal IPv4 tails
  if (!isIPv6(ip)) return ip
  // a zone is no part of the address (RFC 4007), and ipaddr.js reads only alphanumeric ones
  const zone = ip.indexOf('%')
  const text = zone === -1 ? ip : ip.slice(0, zone)
  // '::' and one group or dotted quad lies in ::/64; ipaddr.js would read '::a.b.c.d'
  // (IPv4-compatible, deprecated) as IPv4-mapped, unlike the same address in hex
  if (text.startsWith('::') && text.indexOf(':', 2) === -1) return '0:0:0:0::/64'
  let address: ipaddr.IPv6
  try {
    address = ipaddr.IPv6.parse(text)
  } catch {
    return ip // an address node:net reads and ipaddr.js does not: never a 500 on the request path
  }
  if (address.isIPv4MappedAddress()) return address.toIPv4Address().toString()
  // the /64 as the store keys have always spelled it: four hextets, lower case, no zero padding
  const [a, b, c, d] = address.parts
  return `${a!.toString(16)}:${b!.toString(16)}:${c!.toString(16)}:${d!.toString(16)}::/64`
}

const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'base64url') => string }).hash

/**
 * The hash of identities for an app: SHA-256 by default; with a secret, HMAC-SHA256, so
 * that nobody without the secret can test a guess (an IPv4 address is one of only 2^32).
 */
export function identityHasher (secret: string | undefined, cacheSize = IDENTITY_CACHE): (identity: string) => string {
  return rememberedBy(plainHasher(secret), cacheSize)
}

/**
 * `make(identity)`, remembered for (at least) the last `size` identities: the callers of
 * the last moments, whose hash costs more than the rest of a decision in memory.
 */
export function rememberedBy<V> (make: (identity: string) => V, size = IDENTITY_CACHE): (identity: string) => V {
  const known = new RecentMap<V>(size)
  return (identity) => {
    let value = known.get(identity)
    if (value === undefined) {
      value = make(identity)
      // identities longer than a key's worth are not kept: the cache must not hold megabytes
      if (identity.length <= 256) known.set(identity, value)
    }
    return value
  }
}

/** The hash of identities for an app, remembering nothing (for callers that keep their own). */
export function plainHasher (secret: string | undefined): (identity: string) => string {
  const hash = secret === undefined
    ? hashIdentity
    : (identity: string) => crypto.createHmac('sha256', secret).update(identity).digest('base64url').slice(0, 22)
  // flat: a slice or a concatenation would keep the string it came from alive
  return (identity) => flat(hash(identity))
}

/** Identities whose hash is remembered, at least (at most twice as many are held). */
export const IDENTITY_CACHE = 10_000

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
