-- The record's existence, the length of a list of it (its items or its
-- journal), and a range of that list.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
return {'ok', redis.call('LLEN', KEYS[2]), redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])}
