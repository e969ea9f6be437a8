// The benchmarks' pure helpers: order statistics, steal from /proc/stat, Redis INFO parsing,
// CPU time per request.
import { describe, expect, it } from 'vitest'
// @ts-expect-error plain JavaScript without declarations
import { addedOver, addedRatio, cpuBetween, cpuUsPerRequest, median, parseCpuLine, quantile, spread } from '../../bench/lib/stats.js'
// @ts-expect-error plain JavaScript without declarations
import { infoField, limiterCommands, parseCommandstats, perDecision, redisCpuUsPer } from '../../bench/lib/redis-info.js'

describe('bench helpers', () => {
  it('takes medians and quantiles between order statistics, ignoring what is not a number', () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect(quantile([10, 20, 30, 40, 50], 0.25)).toBe(20)
    expect(median([NaN, 5])).toBe(5)
    expect(spread([0.9, 1.1, 1.0])).toEqual({ median: 1.0, min: 0.9, max: 1.1, n: 3 })
    expect(spread([]).n).toBe(0)
  })

  it('reads the steal share between two /proc/stat readings', () => {
    const before = parseCpuLine('cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3\n')
    const after = parseCpuLine('cpu  200 0 100 1500 10 0 10 135 0 0\n')
    expect(before.steal).toBe(35)
    // total grew by 100 + 50 + 700 + 5 + 100 = 955; steal by 100
    expect(cpuBetween(before, after).steal).toBeCloseTo(100 / 955, 10)
    expect(cpuBetween(before, after).busy).toBeCloseTo(1 - 700 / 955, 10)
    expect(cpuBetween(undefined, after).steal).toBeNaN()
  })

  it('parses INFO commandstats and counts a limiter\'s own commands', () => {
    const text = '# Commandstats\r\ncmdstat_evalsha:calls=10,usec=50,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n' +
      'cmdstat_set:calls=8,usec=8,usec_per_call=1.00\r\ncmdstat_info:calls=3,usec=90,usec_per_call=30.00\r\ncmdstat_config|resetstat:calls=1,usec=1,usec_per_call=1.00\r\n'
    const stats = parseCommandstats(text)
    expect(stats.evalsha).toEqual({ calls: 10, usec: 50, usecPerCall: 5 })
    expect(limiterCommands(stats)).toEqual({ scripts: 10, all: 18, scriptUsec: 50 })
    expect(infoField('# CPU\r\nused_cpu_sys:1.5\r\nused_cpu_user:2.25\r\n', 'used_cpu_user')).toBe(2.25)
  })

  it('divides a process\'s CPU time (user + system µs) between two readings by the requests completed', () => {
    const before = { user: 1_000_000, system: 200_000 }
    const after = { user: 1_900_000, system: 500_000 }
    // 900 000 + 300 000 µs over 40 000 requests
    expect(cpuUsPerRequest(before, after, 40_000)).toBe(30)
    expect(cpuUsPerRequest(before, after, 0)).toBeNaN()
    expect(cpuUsPerRequest(undefined, after, 10)).toBeNaN()
  })

  it('takes what each run adds over a baseline median, and one added cost over another', () => {
    expect(addedOver([30, 34, 32], 20)).toEqual({ median: 12, min: 10, max: 14, n: 3 })
    expect(addedRatio(6, 12)).toBe(0.5)
    // no ratio over an added cost that is not above zero, nor with a side not measured
    expect(addedRatio(6, 0)).toBeNaN()
    expect(addedRatio(6, -1)).toBeNaN()
    expect(addedRatio(NaN, 4)).toBeNaN()
  })

  it('reads Redis CPU µs per operation from two INFO cpu texts', () => {
    const before = '# CPU\r\nused_cpu_sys:1.000000\r\nused_cpu_user:2.000000\r\n'
    const after = '# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:2.750000\r\n'
    // 1 s more over 100 000 operations
    expect(redisCpuUsPer(before, after, 100_000)).toBeCloseTo(10, 9)
    expect(redisCpuUsPer(undefined, after, 100_000)).toBeNaN()
    expect(redisCpuUsPer(before, after, 0)).toBeNaN()
  })

  it('counts script calls, commands and script µs per decision from INFO commandstats', () => {
    // 8 calls of 32 decisions: one TIME and one MGET per call, one SET per decision
    const text = 'cmdstat_evalsha:calls=8,usec=1280,usec_per_call=160.00\r\ncmdstat_time:calls=8,usec=8,usec_per_call=1.00\r\n' +
      'cmdstat_mget:calls=8,usec=40,usec_per_call=5.00\r\ncmdstat_set:calls=256,usec=256,usec_per_call=1.00\r\ncmdstat_info:calls=2,usec=60,usec_per_call=30.00\r\n'
    expect(perDecision(parseCommandstats(text), 256)).toEqual({ scriptCallsPerDecision: 1 / 32, commandsPerDecision: 280 / 256, scriptUsPerDecision: 5 })
  })
})
