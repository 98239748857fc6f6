local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
local exp = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'le', exp)
return {'ok', exp}
