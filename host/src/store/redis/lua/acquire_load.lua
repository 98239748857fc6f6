-- After TAKE_LEASE, the record and the signals; the journal is read by an
-- LRANGE pipelined right after this script (see `acquire_and_load`), so an
-- invocation still starts with one round trip, without copying every
-- entry into a Lua table and out again.
return {'ok', tok, exp, redis.call('HGETALL', KEYS[1]), redis.call('LLEN', KEYS[2]),
  redis.call('LRANGE', KEYS[3], 0, -1), redis.call('LRANGE', KEYS[4], 0, -1)}
