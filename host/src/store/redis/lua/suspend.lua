local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
local arrived = ARGV[3] ~= '' and
  tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0') > tonumber(ARGV[4])
redis.call('HDEL', KEYS[1], 'lo', 'lt', 'le')
local wait = ARGV[2]
if arrived then wait = ARGV[5] end
redis.call('HSET', KEYS[1], 'st', 'suspended', 'wait', wait, 'upd', now)
if arrived then return {'ok', 1} end
return {'ok', 0}
