-- Appends under the lease whose token is ARGV[T], at index ARGV[T + 1],
-- to record X, journal J, stored-value references B and items ITEMS,
-- which the script this is part of sets; ends without a reply.
local now = now_ms()
local bad = leased(X, ARGV[T], now)
if bad then return bad end
local len = redis.call('LLEN', J)
if len ~= tonumber(ARGV[T + 1]) then return {'conflict', len} end
for i = T + 2, #ARGV, 4 do
  redis.call('RPUSH', J, ARGV[i])
  if ARGV[i + 1] ~= '' then redis.call('RPUSH', B, ARGV[i + 1]) end
  if ARGV[i + 2] == '1' then redis.call('RPUSH', ITEMS, ARGV[i + 3]) end
end
