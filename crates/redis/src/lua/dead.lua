-- ARGV: prefix, group, entry id, lease number, reason, last error. Moves the entry to the DLQ
-- stream with its failure, atomically: exactly one dead letter per dead-lettered delivery.
local g, id = ARGV[2], ARGV[3]
local err = check_held(g, id, ARGV[4])
if err then return err end
local e = redis.call('XRANGE', k('s', g), id, id)
if #e == 0 then return redis.error_reply('LEASELOST entry ' .. id .. ' is gone') end
local fields = e[1][2]
local dlq = redis.call('XADD', k('dlq'), '*', 'g', g, 't', field(fields, 't'), 'e', field(fields, 'e'),
  'r', ARGV[5], 'a', ARGV[4], 'x', ARGV[6], 'p', string.match(id, '^(%d+)'))
dlq_count(g, 1)
settle(g, id)
return dlq
