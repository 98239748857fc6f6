if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2])}
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return {'ok'}
