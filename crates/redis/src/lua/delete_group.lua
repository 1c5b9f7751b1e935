-- ARGV: prefix, group. Deletes the group, its pending events and its dead letters.
local g = ARGV[2]
redis.call('DEL', k('s', g), k('due', g), k('att', g), k('held', g))
redis.call('HDEL', k('groups'), g)
purge(g, {})
redis.call('HDEL', k('dlqn'), g)
return 1
