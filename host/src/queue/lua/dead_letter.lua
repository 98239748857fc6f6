-- Moves one entry to the dead-letter stream. ARGV: group, entry id, then
-- field/value pairs for the dead letter.
-- Its progress mark (KEYS[3]) goes with it.
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1
