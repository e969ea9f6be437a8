import { describe, expect, it } from 'vitest'
import { createHmac } from 'node:crypto'
import { hashIdentity, identityHasher, ipIdentity } from '../../lib/identity/hash.js'

describe('ipIdentity', () => {
  it('keeps IPv4 addresses as they are', () => {
    expect(ipIdentity('192.0.2.10')).toBe('192.0.2.10')
  })

  it('groups IPv6 addresses by their /64, however they are written', () => {
    const net = '2001:db8:0:1::/64'
    expect(ipIdentity('2001:db8:0:1::1')).toBe(net)
    expect(ipIdentity('2001:0db8:0000:0001:ffff:ffff:ffff:ffff')).toBe(net)
    expect(ipIdentity('2001:DB8:0:1:a:b:c:d')).toBe(net)
    expect(ipIdentity('2001:db8:0:1::1%eth0')).toBe(net)
    expect(ipIdentity('2001:db8:0:2::1')).toBe('2001:db8:0:2::/64')
    expect(ipIdentity('::1')).toBe('0:0:0:0::/64')
    expect(ipIdentity('fe80::')).toBe('fe80:0:0:0::/64')
    // IPv4-compatible (deprecated) is not IPv4-mapped, in dotted or hex form
    expect(ipIdentity('::192.0.2.10')).toBe('0:0:0:0::/64')
    expect(ipIdentity('::c000:20a')).toBe('0:0:0:0::/64')
    // zones ipaddr.js would not read on its own
    expect(ipIdentity('fe80::1%eth0.1')).toBe('fe80:0:0:0::/64')
    expect(ipIdentity('fe80::1%en-0')).toBe('fe80:0:0:0::/64')
  })

  it('reads IPv4-mapped IPv6 as the IPv4 address', () => {
    expect(ipIdentity('::ffff:192.0.2.10')).toBe('192.0.2.10')
    expect(ipIdentity('::ffff:c000:20a')).toBe('192.0.2.10')
    expect(ipIdentity('::FFFF:192.0.2.10%eth0')).toBe('192.0.2.10')
  })

  it('passes through what is not an IP address', () => {
    expect(ipIdentity('unix-socket')).toBe('unix-socket')
    expect(ipIdentity('')).toBe('')
    // node:net decides what is an address: no classful, hex or octal IPv4 forms
    expect(ipIdentity('127.1')).toBe('127.1')
    expect(ipIdentity('::ffff:0x7f.0.0.1')).toBe('::ffff:0x7f.0.0.1')
  })
})

describe('hashIdentity', () => {
  it('is short, fixed-length, stable, and reveals nothing of the identity', () => {
    const inputs = ['', 'a', 'sk-secret-key', 'x'.repeat(16 * 1024), '{tag}', '\u0000\u00ff', 'ключ', '🔑']
    const hashes = inputs.map(hashIdentity)
    for (const [i, h] of hashes.entries()) {
      expect(h).toMatch(/^[A-Za-z0-9_-]{22}$/)
      expect(hashIdentity(inputs[i]!)).toBe(h)
      if (inputs[i]!.length > 2) expect(h).not.toContain(inputs[i])
    }
    expect(new Set(hashes).size).toBe(inputs.length)
  })
})

describe('the identity hasher the limiter uses', () => {
  it('remembers hashes without changing them: the same value as hashing afresh, across evictions', () => {
    const hasher = identityHasher(undefined, 3)
    const secret = identityHasher('a secret of sixteen+ chars', 3)
    const hmac = (id: string) => createHmac('sha256', 'a secret of sixteen+ chars').update(id).digest('base64url').slice(0, 22)
    for (let round = 0; round < 3; round++) {
      for (const id of ['10.0.0.1', 'key:abc', 'x'.repeat(300), '2001:db8::/64', '10.0.0.1']) {
        expect(hasher(id)).toBe(hashIdentity(id))
        expect(secret(id)).toBe(hmac(id))
      }
    }
  })
})
