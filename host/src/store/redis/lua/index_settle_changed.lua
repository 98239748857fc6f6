-- Settles right after a status change, in the change's pipeline (one
-- Redis only: KEYS span the record's and the index's slots). If record
-- KEYS[1] has status ARGV[2] now, removes execution ARGV[1] from the
-- index lists KEYS[3..] (the other statuses') where it was entered before
-- its entry in KEYS[2] (its list for ARGV[2]). Returns 1 when it settled;
-- 0 when the record is in another status (the change was refused, or a
-- later one ran) or has no such entry, which leaves settling to the
-- caller.
if redis.call('HGET', KEYS[1], 'st') ~= ARGV[2] then return 0 end
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not at then return 0 end
at = tonumber(at)
for i = 3, #KEYS do
  local s = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if s and tonumber(s) < at then redis.call('ZREM', KEYS[i], ARGV[1]) end
end
return 1
