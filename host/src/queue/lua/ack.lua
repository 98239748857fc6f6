-- Acknowledges and deletes entries (nobody else reads this stream's group,
-- so an acknowledged entry is of no further use).
-- Their progress marks (KEYS[2]) go with them.
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('HDEL', KEYS[2], unpack(ARGV, 2))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
