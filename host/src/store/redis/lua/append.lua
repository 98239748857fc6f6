local now = now_ms()
local bad = leased(KEYS[1], ARGV[1], now)
if bad then return bad end
local len = redis.call('LLEN', KEYS[2])
if len ~= tonumber(ARGV[2]) then return {'conflict', len} end
for i = 3, #ARGV, 4 do
  redis.call('RPUSH', KEYS[2], ARGV[i])
  if ARGV[i + 1] ~= '' then redis.call('RPUSH', KEYS[3], ARGV[i + 1]) end
  if ARGV[i + 2] == '1' then redis.call('RPUSH', KEYS[4], ARGV[i + 3]) end
end
return {'ok'}
