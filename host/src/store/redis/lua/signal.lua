local st = redis.call('HGET', KEYS[1], 'st')
if not st then return {'notfound'} end
if TERMINAL[st] then return {'terminal', st} end
local seq = redis.call('RPUSH', KEYS[2], ARGV[2]) - 1
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[1], 1)
local woke = 0
if st == 'suspended' then
  -- `ws` lists the names a suspended execution waits for, each between
  -- NULs; a record suspended by an older host has only its encoded wait.
  local ws = redis.call('HGET', KEYS[1], 'ws')
  local wanted = (ws and string.find(ws, '\0' .. ARGV[1] .. '\0', 1, true))
    or redis.call('HGET', KEYS[1], 'wait') == ARGV[3]
  if wanted then
    redis.call('HDEL', KEYS[1], 'ws')
    redis.call('HSET', KEYS[1], 'wait', ARGV[4], 'upd', now_ms())
    woke = 1
  end
end
return {'ok', seq, woke}
