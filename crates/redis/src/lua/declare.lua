-- ARGV: prefix, group, pattern.
local cur = redis.call('HGET', k('groups'), ARGV[2])
if cur and cur ~= ARGV[3] then
  return redis.error_reply('CONFLICT group ' .. ARGV[2] .. ' is declared on ' .. cur)
end
if not cur then
  redis.call('HSET', k('groups'), ARGV[2], ARGV[3])
  redis.pcall('XGROUP', 'CREATE', k('s', ARGV[2]), 'g', '$', 'MKSTREAM')
end
return 1
