-- Appends to the list of partition names (KEYS[1]) those of ARGV it does
-- not have yet (ARGV[i] is partition i's name), and returns the list.
-- Two hosts asking at once agree: the first to run records the names.
for i = redis.call('LLEN', KEYS[1]) + 1, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
return redis.call('LRANGE', KEYS[1], 0, -1)
