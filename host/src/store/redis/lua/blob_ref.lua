-- Takes a reference to a stored value; tells whether its bytes are there.
-- The count goes up first, so a concurrent release cannot delete them.
redis.call('INCR', KEYS[1])
return redis.call('EXISTS', KEYS[2])
