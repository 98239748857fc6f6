-- Helpers every execution script starts with.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local TERMINAL = {completed = true, failed = true, cancelled = true}
-- nil when `x` exists, has not ended and its live lease has `token`;
-- otherwise the reply explaining why not.
local function leased(x, token, now)
  local v = redis.call('HMGET', x, 'st', 'lt', 'le')
  if not v[1] then return {'notfound'} end
  if TERMINAL[v[1]] then return {'terminal', v[1]} end
  if v[2] ~= token or tonumber(v[3]) <= now then return {'leaselost'} end
  return nil
end
