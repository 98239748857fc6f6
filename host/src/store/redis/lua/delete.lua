-- Deletes an ended execution; with ARGV[1] set, only if it ended before
-- that time (the retention sweep). Returns the stored values it referred to
-- and the record's fixed part (for its workflow's index list).
local v = redis.call('HMGET', KEYS[1], 'st', 'upd', 'meta')
if not v[1] then return {'notfound'} end
if not TERMINAL[v[1]] then return {'active', v[1]} end
if ARGV[1] ~= '' and tonumber(v[2]) >= tonumber(ARGV[1]) then return {'kept'} end
local blobs = redis.call('LRANGE', KEYS[6], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
return {'ok', blobs, v[3]}
