-- ARGV: prefix, max. Routes delayed events that are due; answers the ms until the next one
-- is due, or -1 when none waits.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', k('delayed'), '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local a = string.find(m, '\n', 1, true)
  local b = string.find(m, '\n', a + 1, true)
  route(string.sub(m, a + 1, b - 1), string.sub(m, b + 1))
  redis.call('ZREM', k('delayed'), m)
end
count_routed()
local nxt = redis.call('ZRANGE', k('delayed'), 0, 0, 'WITHSCORES')
if #nxt == 0 then return -1 end
return math.max(0, tonumber(nxt[2]) - now)
