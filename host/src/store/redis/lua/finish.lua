local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
redis.call('HDEL', KEYS[1], 'lo', 'lt', 'le', 'wait')
redis.call('HSET', KEYS[1], 'st', ARGV[2], 'out', ARGV[3], 'upd', now)
-- The record as written, as `get` reads it: the host hands it to the
-- execution's waiters, which then need no round trip of their own.
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2])}
