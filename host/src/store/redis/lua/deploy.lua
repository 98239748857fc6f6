-- Points a name at a digest and adds a version, unless it points there
-- already. KEYS: deployments hash, the name's version list (same slot
-- through its hash tag). ARGV: name, digest hex, encoded version.
-- Returns the version number and the encoded current version.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local n = redis.call('LLEN', KEYS[2])
if cur == ARGV[2] and n > 0 then
  return {n, redis.call('LINDEX', KEYS[2], -1)}
end
n = redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {n, ARGV[3]}
