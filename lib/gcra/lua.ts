/**
 * The Redis side of the GCRA decision: the same math as `gcra.ts` (`startTat`, `decide`),
 * in Lua, run atomically over every bucket of one request.
 */

const HEADER = `--[[ fastify-gcra: one GCRA decision over all buckets of a request, atomically
KEYS[i]     bucket i; every key of one call carries the same {hash tag}, so one Cluster slot
ARGV[1]     mode: '1' = charge when every bucket admits; '0' = check only, write nothing
ARGV[2i]    bucket i: capacity D, integer microseconds
ARGV[2i+1]  bucket i: increment c*T, integer microseconds
clock       %CLOCK_DOC%
reply       { allowed (1 | 0), now (us), tat_1 (us), ..., tat_n (us) }: TATs after the decision
writes      only when allowed and charging: KEYS[i] = new TAT (integer us),
            PX = ceil((TAT - now) / 1000) ms, the time until that bucket is full again
]]`

/**
 * Lua lines that set `tat` to where a decision starts from `stored` (gcra.ts startTat),
 * inlined in the decision and the settle scripts: what is not a finite number is absent,
 * a past TAT carries no state, one beyond now + D counts as an empty bucket.
 */
const startTat = (stored: string): string => `  local tat = tonumber(${stored})
  if tat == nil or tat ~= tat or tat <= now or tat == math.huge then
    tat = now
  elseif tat > now + cap then
    tat = now + cap
  end`

const BODY = `
local n = #KEYS
local charge = ARGV[1] == '1'
local stored = redis.call('MGET', unpack(KEYS))
local reply = { 1, now }
local allowed = 1
for i = 1, n do
  local cap = tonumber(ARGV[2 * i])
  local inc = tonumber(ARGV[2 * i + 1])
${startTat('stored[i]')}
  reply[i + 2] = tat
  if tat + inc - now > cap then allowed = 0 end
end
reply[1] = allowed
if allowed == 1 and charge then
  for i = 1, n do
    local tat = reply[i + 2] + tonumber(ARGV[2 * i + 1])
    reply[i + 2] = tat
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', string.format('%.0f', math.ceil((tat - now) / 1000)))
  end
end
return reply
`

const TIME_CLOCK = `
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
`

/** The production script: the clock is Redis `TIME`. */
export const GCRA_LUA = HEADER.replace('%CLOCK_DOC%', 'Redis TIME in microseconds (the store\'s clock, never an app server\'s)') + TIME_CLOCK + BODY

/**
 * The same body with the clock taken from the last ARGV (µs). Only for tests that replay
 * the reference cases at chosen instants; never registered by the plugin.
 */
export const GCRA_LUA_FIXED_CLOCK = HEADER.replace('%CLOCK_DOC%', 'ARGV[#ARGV], microseconds (tests only)') +
  '\nlocal now = tonumber(ARGV[#ARGV])\n' + BODY

const SETTLE_HEADER = `--[[ fastify-gcra: settle a charge, atomically over every bucket of a request
KEYS[i]     bucket i (one {hash tag}, one Cluster slot)
ARGV[2i-1]  bucket i: capacity D, integer microseconds
ARGV[2i]    bucket i: the TAT's change, integer microseconds (negative: a refund)
clock       %CLOCK_DOC%
reply       { 1, now (us), tat_1 (us), ..., tat_n (us) }: TATs after the change, at least now
writes      KEYS[i] = start + change, at most now + D (start as in a decision: max(stored, now),
            at most now + D), with PX = ceil((TAT - now) / 1000) ms; a TAT at or before now
            is a full bucket: DEL
]]`

const SETTLE_BODY = `
local reply = { 1, now }
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  local delta = tonumber(ARGV[2 * i])
${startTat("redis.call('GET', KEYS[i])")}
  tat = tat + delta
  if tat > now + cap then tat = now + cap end
  if tat <= now then
    redis.call('DEL', KEYS[i])
    reply[i + 2] = now
  else
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', string.format('%.0f', math.ceil((tat - now) / 1000)))
    reply[i + 2] = tat
  end
end
return reply
`

/** The production settle script (Redis `TIME`). */
export const SETTLE_LUA = SETTLE_HEADER.replace('%CLOCK_DOC%', 'Redis TIME in microseconds') + TIME_CLOCK + SETTLE_BODY

/** The settle script with the clock from the last ARGV (µs), for tests only. */
export const SETTLE_LUA_FIXED_CLOCK = SETTLE_HEADER.replace('%CLOCK_DOC%', 'ARGV[#ARGV], microseconds (tests only)') +
  '\nlocal now = tonumber(ARGV[#ARGV])\n' + SETTLE_BODY

/** Concurrency slots: a sorted set per key, member = the request's token, score = lease end (ms, Redis TIME). */
export const ACQUIRE_LUA = `--[[ fastify-gcra: take one concurrency slot
KEYS[1]  the slots of one caller on one route (or of the route for everyone)
ARGV     limit, token, lease (ms)
reply    { taken (1 | 0), slots held after the call }
writes   drops leases that ended; when a slot is free: ZADD token (now + lease), PEXPIRE lease
]]
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local limit = tonumber(ARGV[1])
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= limit then return { 0, held } end
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease)
return { 1, held + 1 }
`

export const RENEW_LUA = `--[[ fastify-gcra: extend the lease of a slot still held
KEYS[1]  the slots' key;  ARGV  token, lease (ms)
reply    1 when the slot was still held, else 0 (its lease had ended: it is not taken again)
]]
if redis.replicate_commands then redis.replicate_commands() end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
`
