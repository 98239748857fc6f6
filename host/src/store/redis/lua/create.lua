-- ARGV[1]: the lease's time to live in ms when the record is created
-- leased ('0' when not); the rest, the record's fields. The lease's expiry
-- is dated by the Redis clock, as every other lease here is.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2])}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'le', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl)
end
return {'ok'}
