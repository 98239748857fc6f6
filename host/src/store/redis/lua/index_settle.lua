-- Removes execution ARGV[1] from the index lists KEYS (the statuses it
-- left) where it was entered before ARGV[2]: an entry of a later change,
-- which may have run first, stays.
local at = tonumber(ARGV[2])
for i = 1, #KEYS do
  local s = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if s and tonumber(s) < at then redis.call('ZREM', KEYS[i], ARGV[1]) end
end
return 1
