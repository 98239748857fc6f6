-- The record, the journal's length and the signals; the journal itself is
-- read by an LRANGE pipelined right after this script (see `load`), so a
-- load is one round trip without copying every entry into a Lua table and
-- out again.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2]),
  redis.call('LRANGE', KEYS[3], 0, -1), redis.call('LRANGE', KEYS[4], 0, -1)}
