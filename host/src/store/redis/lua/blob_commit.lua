-- Moves an uploaded value into place unless an identical one got there
-- first.
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[1])
  return {'ok'}
end
if redis.call('STRLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return {'short'} end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PERSIST', KEYS[2])
return {'ok'}
