local names = redis.call('LRANGE', KEYS[2], 0, -1)
local skip = tonumber(ARGV[2])
for i, name in ipairs(names) do
  if name == ARGV[1] then
    if skip == 0 then return {'ok', i - 1, redis.call('LINDEX', KEYS[1], i - 1)} end
    skip = skip - 1
  end
end
return {'none'}
