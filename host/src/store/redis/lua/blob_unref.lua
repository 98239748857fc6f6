-- Drops a reference; the last one deletes the bytes.
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
