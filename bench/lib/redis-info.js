// Reading Redis INFO: command statistics, CPU and memory of a private redis-server.

/** `INFO commandstats` → { command: { calls, usec, usecPerCall } } (`cmdstat_` dropped, lower case). */
export function parseCommandstats (text) {
  const out = {}
  for (const line of text.split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):(.*)$/.exec(line)
    if (m === null) continue
    const fields = Object.fromEntries(m[2].split(',').map(kv => kv.split('=')))
    out[m[1].toLowerCase()] = { calls: Number(fields.calls), usec: Number(fields.usec), usecPerCall: Number(fields.usec_per_call) }
  }
  return out
}

/** One `name:value` field of an INFO text, as a number when it is one. */
export function infoField (text, name) {
  const m = new RegExp(`^${name}:(.*)$`, 'm').exec(text)
  if (m === null) return undefined
  const value = m[1].trim()
  return Number.isFinite(Number(value)) ? Number(value) : value
}

// what the benchmark itself sends, not the limiters
const ADMIN = new Set(['config|resetstat', 'config|get', 'config', 'info', 'flushall', 'ping', 'client|setname', 'client|setinfo', 'client', 'hello', 'select', 'dbsize', 'memory|usage', 'script|load', 'command', 'scan'])

/** Script calls (EVALSHA + EVAL) and every command a limiter ran (scripts' own commands included). */
export function limiterCommands (stats) {
  let scripts = 0
  let all = 0
  let usec = 0
  for (const [name, s] of Object.entries(stats)) {
    if (ADMIN.has(name)) continue
    all += s.calls
    if (name === 'evalsha' || name === 'eval') {
      scripts += s.calls
      usec += s.usec
    }
  }
  return { scripts, all, scriptUsec: usec }
}

/** Redis server CPU seconds so far (user + system, main thread and others). */
export function redisCpuSeconds (infoCpu) {
  return (infoField(infoCpu, 'used_cpu_user') ?? 0) + (infoField(infoCpu, 'used_cpu_sys') ?? 0)
}

/** Redis CPU µs per operation between two `INFO cpu` texts; NaN when a text is missing or the count is not above 0. */
export function redisCpuUsPer (infoBefore, infoAfter, count) {
  if (infoBefore == null || infoAfter == null || !(count > 0)) return NaN
  return (redisCpuSeconds(infoAfter) - redisCpuSeconds(infoBefore)) * 1e6 / count
}

/** From INFO commandstats over `decisions` decisions: script calls, every limiter command (scripts' own included) and script µs, per decision. */
export function perDecision (stats, decisions) {
  const { scripts, all, scriptUsec } = limiterCommands(stats)
  return { scriptCallsPerDecision: scripts / decisions, commandsPerDecision: all / decisions, scriptUsPerDecision: scriptUsec / decisions }
}
