-- Removes execution ARGV[1] from index list KEYS[1] if its entry is still
-- at ARGV[2] (a reader dropping a stale entry it read).
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
