local st = redis.call('HGET', KEYS[1], 'st')
if not st then return {'notfound'} end
if TERMINAL[st] then return {'terminal', st} end
redis.call('HDEL', KEYS[1], 'lo', 'lt', 'le', 'wait')
redis.call('HSET', KEYS[1], 'st', 'cancelled', 'out', ARGV[1], 'upd', now_ms())
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2])}
