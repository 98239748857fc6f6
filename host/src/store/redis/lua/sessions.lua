-- Every session of execution KEYS[1] (hash KEYS[2]).
if redis.call('EXISTS', KEYS[1]) == 0 then return {'notfound'} end
return {'ok', redis.call('HGETALL', KEYS[2])}
