-- ARGV: prefix, dead-letter id. Re-queues the event to its group and deletes the dead letter,
-- atomically.
local e = redis.call('XRANGE', k('dlq'), ARGV[2], ARGV[2])
if #e == 0 then return redis.error_reply('NOTFOUND dead letter ' .. ARGV[2]) end
local fields = e[1][2]
local g = field(fields, 'g')
if redis.call('HEXISTS', k('groups'), g) == 0 then
  return redis.error_reply('NOGROUP group ' .. g .. ' is not declared')
end
redis.call('XADD', k('s', g), '*', 't', field(fields, 't'), 'e', field(fields, 'e'))
redis.call('XDEL', k('dlq'), ARGV[2])
dlq_count(g, -1)
return 1
