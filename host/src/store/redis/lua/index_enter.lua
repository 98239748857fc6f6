-- Enters execution ARGV[1] in the index lists KEYS[2..] (one bucket's),
-- at ARGV[2] if given, else at the bucket's next time: the server's clock
-- in µs, made strictly increasing per bucket by KEYS[1], so the changes
-- of one execution are ordered even within a microsecond. Returns it.
local at
if ARGV[2] ~= '' then
  at = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  at = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local last = tonumber(redis.call('GET', KEYS[1]) or '0')
  if at <= last then at = last + 1 end
  redis.call('SET', KEYS[1], string.format('%.0f', at))
end
for i = 2, #KEYS do redis.call('ZADD', KEYS[i], string.format('%.0f', at), ARGV[1]) end
return at
