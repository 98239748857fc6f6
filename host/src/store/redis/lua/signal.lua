local st = redis.call('HGET', KEYS[1], 'st')
if not st then return {'notfound'} end
if TERMINAL[st] then return {'terminal', st} end
local seq = redis.call('RPUSH', KEYS[2], ARGV[2]) - 1
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
local woke = 0
if st == 'suspended' and redis.call('HGET', KEYS[1], 'wait') == ARGV[3] then
  redis.call('HSET', KEYS[1], 'wait', ARGV[4], 'upd', now_ms())
  woke = 1
end
return {'ok', seq, woke}
