-- ARGV: prefix, dedupe window ms, then per event: topic, dedupe key, not-before ms (0: now),
-- event JSON. Answers 1 (stored) or 0 (duplicate) per event, all in one atomic step.
local window = ARGV[2]
local now = now_ms()
local out = {}
for i = 3, #ARGV, 4 do
  local topic, dkey, due, event = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  if redis.call('SET', k('dd', dkey), '1', 'NX', 'PX', window) then
    if due > now then
      local n = redis.call('INCR', k('delayed_seq'))
      redis.call('ZADD', k('delayed'), due, n .. '\n' .. topic .. '\n' .. event)
    else
      route(topic, event)
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
count_routed()
return out
