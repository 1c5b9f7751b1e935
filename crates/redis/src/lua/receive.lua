-- ARGV: prefix, group, consumer, max, lease ms. Leases entries whose visibility time has come
-- (lease expired or nack delay over; claimed from their old holder with XCLAIM), then new
-- ones. Answers {entries, ms until the next is due or -1, the group's last-delivered id};
-- each entry is {id, lease number (= attempt), fields}.
local g, consumer = ARGV[2], ARGV[3]
local max, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('HEXISTS', k('groups'), g) == 0 then
  return redis.error_reply('NOGROUP group ' .. g .. ' is not declared')
end
local s, due = k('s', g), k('due', g)
local now = now_ms()
local out = {}
local function take(id, fields)
  local n = redis.call('HINCRBY', k('att', g), id, 1)
  redis.call('HSET', k('held', g), id, n)
  redis.call('ZADD', due, now + lease, id)
  out[#out + 1] = {id, n, fields}
end
local ready = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, max)
if #ready > 0 then
  local claimed = redis.call('XCLAIM', s, 'g', consumer, 0, unpack(ready))
  for _, e in ipairs(claimed) do take(e[1], e[2]) end
end
if #out < max then
  local r = redis.call('XREADGROUP', 'GROUP', 'g', consumer, 'COUNT', max - #out, 'STREAMS', s, '>')
  if r then
    for _, e in ipairs(r[1][2]) do take(e[1], e[2]) end
  end
end
if #out > 0 then return {out, 0, ''} end
local nxt = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
local wait = -1
if #nxt > 0 then wait = math.max(0, tonumber(nxt[2]) - now) end
local last = '0-0'
for _, info in ipairs(redis.call('XINFO', 'GROUPS', s)) do
  if field(info, 'name') == 'g' then last = field(info, 'last-delivered-id') end
end
return {out, wait, last}
