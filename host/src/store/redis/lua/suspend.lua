-- KEYS: record, signal counts. ARGV: token, wait, the ready wait, the
-- waited signal names (`waited_names`), then name/consumed pairs.
local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
local arrived = false
for i = 5, #ARGV, 2 do
  if tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0') > tonumber(ARGV[i + 1]) then
    arrived = true
    break
  end
end
redis.call('HDEL', KEYS[1], 'lo', 'lt', 'le')
if arrived then
  redis.call('HDEL', KEYS[1], 'ws')
  redis.call('HSET', KEYS[1], 'st', 'suspended', 'wait', ARGV[3], 'upd', now)
  return {'ok', 1}
end
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], 'ws')
else
  redis.call('HSET', KEYS[1], 'ws', ARGV[4])
end
redis.call('HSET', KEYS[1], 'st', 'suspended', 'wait', ARGV[2], 'upd', now)
return {'ok', 0}
