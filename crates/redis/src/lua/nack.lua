-- ARGV: prefix, group, entry id, lease number, delay ms. The entry stays pending; it becomes
-- visible again when the delay is over and the next receive claims it.
local g, id = ARGV[2], ARGV[3]
local err = check_held(g, id, ARGV[4])
if err then return err end
redis.call('ZADD', k('due', g), now_ms() + tonumber(ARGV[5]), id)
redis.call('HDEL', k('held', g), id)
return 1
