-- After TAKE_LEASE, LOAD's reply: an invocation starts with one round trip.
return {'ok', tok, exp, redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2]),
  redis.call('LRANGE', KEYS[2], 0, -1), redis.call('LRANGE', KEYS[3], 0, -1),
  redis.call('LRANGE', KEYS[4], 0, -1)}
