-- Records that entry ARGV[1] was taken over (its delivery ARGV[3]) while
-- its execution's journal held ARGV[2] entries, and returns how many
-- deliveries in a row ended without the journal growing. The mark
-- (`<length>:<stalled>`) is kept in the hash KEYS[1]. The first take-over
-- knows nothing of the deliveries before it, so it counts them all as
-- stalled.
local len = tonumber(ARGV[2])
local stalled = tonumber(ARGV[3]) - 1
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if prev then
  local sep = string.find(prev, ':', 1, true)
  if tonumber(string.sub(prev, 1, sep - 1)) < len then
    stalled = 0
  else
    stalled = tonumber(string.sub(prev, sep + 1)) + 1
  end
end
redis.call('HSET', KEYS[1], ARGV[1], len .. ':' .. stalled)
return stalled
