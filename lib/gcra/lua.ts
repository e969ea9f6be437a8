/**
 * The Redis side of the GCRA decision: the same math as `math.ts` (`startTat`, `decide`),
 * in Lua. One call carries the decisions of many requests (coalesced per tick and per
 * node); each is all-or-nothing over its own buckets.
 */

const HEADER = `--[[ fastify-gcra: GCRA decisions of many requests in one call, each over all its
buckets, all-or-nothing, in the order given (a later decision sees the earlier ones' writes)
KEYS        the buckets of decision 1, then of decision 2, ...; on a Cluster every key is
            served by this node (one call per master)
ARGV[1]     m, the number of decisions
ARGV[2]     s, the number of bucket lists (the capacities and increments of a policy set at
            a cost, sent once for every decision that uses them)
then s lists: n, slack, then per bucket: cap, inc (what admits: capacity D plus a route's
            delay; the increment c*T; integer us). A stored TAT beyond now + cap + slack
            is a larger limit's leftover: read as now + cap + slack (an empty bucket)
then m decisions: the index of its list (1..s), mode ('1' = charge when every bucket
            admits; '0' = check only, write nothing); its n keys are the next n KEYS
clock       %CLOCK_DOC%
reply       { now (us), then per decision: allowed (1 | 0), tat_1 (us), ..., tat_n (us) }:
            the TATs after that decision
writes      only for an admitted charge: each of its keys = new TAT (integer us),
            PX = ceil((TAT - now) / 1000) ms, the time until that bucket is full again
reads       every key once, at the start; a key written earlier in the call is read from
            what this call wrote
]]`

/**
 * Lua lines that set `tat` to where a decision starts from `stored` (gcra.ts startTat),
 * inlined in the decision and the settle scripts: what is not a finite number is absent,
 * a past TAT carries no state, one beyond now + D counts as an empty bucket.
 */
const startTat = (stored: string, ceiling = 'cap'): string => `  local tat = tonumber(${stored})
  if tat == nil or tat ~= tat or tat <= now or tat == math.huge then
    tat = now
  elseif tat > now + ${ceiling} then
    tat = now + ${ceiling}
  end`

/** One Redis: every key declared, read at once. */
const READ_DECLARED = `
local keys = KEYS
local stored = redis.call('MGET', unpack(KEYS))
local base = 1
`

/**
 * A Cluster master: keys of many slots may be touched by a script only undeclared (KEYS[1]
 * routes the call) and one command at a time, so they come in ARGV and are read by GET.
 */
const READ_UNDECLARED = `
local count = tonumber(ARGV[1])
local keys = {}
local stored = {}
for i = 1, count do
  keys[i] = ARGV[1 + i]
  stored[i] = redis.call('GET', keys[i])
end
local base = count + 2
`

const BODY = `
local written = {}
local reply = { now }
local a = base + 2
local lists = {}
for j = 1, tonumber(ARGV[base + 1]) do
  local n = tonumber(ARGV[a])
  local slack = tonumber(ARGV[a + 1])
  local caps, incs = {}, {}
  for i = 1, n do
    caps[i] = tonumber(ARGV[a + 2 * i])
    incs[i] = tonumber(ARGV[a + 1 + 2 * i])
  end
  lists[j] = { n, caps, incs, slack }
  a = a + 2 + 2 * n
end
local k = 0
for d = 1, tonumber(ARGV[base]) do
  local list = lists[tonumber(ARGV[a])]
  local charge = ARGV[a + 1] == '1'
  a = a + 2
  local n, caps, incs, slack = list[1], list[2], list[3], list[4]
  local at = #reply + 1
  local allowed = 1
  for i = 1, n do
    local cap = caps[i]
    local own = written[keys[k + i]]
${startTat('own or stored[k + i]', 'cap + slack')}
    reply[at + i] = tat
    if tat + incs[i] - now > cap then allowed = 0 end
  end
  reply[at] = allowed
  if allowed == 1 and charge then
    for i = 1, n do
      local key = keys[k + i]
      local tat = reply[at + i] + incs[i]
      reply[at + i] = tat
      written[key] = tat
      redis.call('SET', key, string.format('%.0f', tat), 'PX', string.format('%.0f', math.ceil((tat - now) / 1000)))
    end
  end
  k = k + n
end
return reply
`

const TIME_CLOCK = `
if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
`

const TIME_DOC = 'Redis TIME in microseconds (the store\'s clock, never an app server\'s)'

/** The production script: the clock is Redis `TIME`. */
export const GCRA_LUA = HEADER.replace('%CLOCK_DOC%', TIME_DOC) + TIME_CLOCK + READ_DECLARED + BODY

/**
 * The script for a Redis Cluster master: its keys span many slots of that master, which
 * Redis 7 allows a script that says so (`allow-cross-slot-keys`; Redis 6 refuses the flag).
 * KEYS[1] is the first key (it routes the call); ARGV[1] = the number of keys, then the
 * keys, then the arguments above from m on.
 */
export const GCRA_LUA_CROSS_SLOT = '#!lua flags=allow-cross-slot-keys\n' + HEADER.replace('%CLOCK_DOC%', TIME_DOC) + TIME_CLOCK + READ_UNDECLARED + BODY

/**
 * The same body with the clock taken from the last ARGV (µs). Only for tests that replay
 * the reference cases at chosen instants; never registered by the plugin.
 */
export const GCRA_LUA_FIXED_CLOCK = HEADER.replace('%CLOCK_DOC%', 'ARGV[#ARGV], microseconds (tests only)') +
  '\nlocal now = tonumber(ARGV[#ARGV])\n' + READ_DECLARED + BODY

const SETTLE_HEADER = `--[[ fastify-gcra: settle a charge, atomically over every bucket of a request
KEYS[i]     bucket i (one {hash tag}, one Cluster slot)
ARGV[2i-1]  bucket i: capacity D, integer microseconds
ARGV[2i]    bucket i: the TAT's change, integer microseconds (negative: a refund)
clock       %CLOCK_DOC%
reply       { 1, now (us), tat_1 (us), ..., tat_n (us) }: TATs after the change, at least now
ARGV[2n+1]  slack: how far past D a stored TAT is true state (held charges), integer us
writes      KEYS[i] = start + change (start as in a decision: max(stored, now), at most
            now + D + slack); a charge ends at most at max(start, now + D), with PX = ceil((TAT - now) / 1000) ms; a TAT at or before now
            is a full bucket: DEL
]]`

const SETTLE_BODY = `
local reply = { 1, now }
local slack = tonumber(ARGV[2 * #KEYS + 1])
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  local delta = tonumber(ARGV[2 * i])
${startTat("redis.call('GET', KEYS[i])", 'cap + slack')}
  local start = tat
  tat = tat + delta
  if delta > 0 then
    local ceiling = now + cap
    if start > ceiling then ceiling = start end
    if tat > ceiling then tat = ceiling end
  end
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
