-- Touches consumer session ARGV[1] (KEYS[2]) of execution KEYS[1]: read
-- up to offset ARGV[2] (-1: none). A session is `acked|last|closed`;
-- a closed one is left as it is. With ARGV[3] = 'close', closes it.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
local v = redis.call('HGET', KEYS[2], ARGV[1])
local acked, closed = -1, '0'
if v then
  local a, _, c = string.match(v, '^(-?%d+)|(%d+)|(%d)$')
  acked, closed = tonumber(a), c
elseif ARGV[3] == 'close' then
  return {'ok', false}
end
if closed == '0' then
  if ARGV[3] == 'close' then closed = '1' end
  local n = tonumber(ARGV[2])
  if n > acked then acked = n end
  v = string.format('%d|%d|%s', acked, now_ms(), closed)
  redis.call('HSET', KEYS[2], ARGV[1], v)
end
return {'ok', v}
