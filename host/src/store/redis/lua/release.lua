local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
redis.call('HDEL', KEYS[1], 'lo', 'lt', 'le', 'ws')
redis.call('HSET', KEYS[1], 'st', 'suspended', 'wait', ARGV[2], 'upd', now)
return {'ok'}
