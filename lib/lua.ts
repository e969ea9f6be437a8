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

const BODY = `
local n = #KEYS
local charge = ARGV[1] == '1'
local stored = redis.call('MGET', unpack(KEYS))
local reply = { 1, now }
local allowed = 1
for i = 1, n do
  local cap = tonumber(ARGV[2 * i])
  local inc = tonumber(ARGV[2 * i + 1])
  -- what is not a finite number is absent; past TATs carry no state
  local tat = tonumber(stored[i])
  if tat == nil or tat ~= tat or tat <= now or tat == math.huge then
    tat = now
  elseif tat > now + cap then
    tat = now + cap
  end
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
