if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2]),
  redis.call('LRANGE', KEYS[2], 0, -1), redis.call('LRANGE', KEYS[3], 0, -1),
  redis.call('LRANGE', KEYS[4], 0, -1)}
