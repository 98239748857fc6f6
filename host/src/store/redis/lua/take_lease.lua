-- Takes the lease (a live lease of another owner refuses); leaves `tok`
-- and `exp` for the reply.
local now = now_ms()
local v = redis.call('HMGET', KEYS[1], 'st', 'lo', 'le')
if not v[1] then return {'notfound'} end
if TERMINAL[v[1]] then return {'terminal', v[1]} end
if v[2] and v[2] ~= ARGV[1] and tonumber(v[3]) > now then return {'held', v[2], v[3]} end
local tok = redis.call('HINCRBY', KEYS[1], 'tok', 1)
local exp = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'lo', ARGV[1], 'lt', tok, 'le', exp, 'st', 'running', 'upd', now)
redis.call('HDEL', KEYS[1], 'wait')
redis.call('HINCRBY', KEYS[1], 'inv', 1)
