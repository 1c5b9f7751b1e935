-- ARGV: prefix, dedupe window ms, the number D of delayed events, D pairs (event number from
-- 1, not-before ms), then per event: topic, dedupe member (`<source> <id>`), event JSON.
-- Answers the numbers of the events dropped as duplicates (none: an empty list); the others
-- are stored, all in one atomic step.
--
-- Dedupe is one sorted set, `<prefix>:dd`: member `<source> <id>`, score the µs its window
-- ends. A call drops the windows that ended, then adds the batch's members with ZADD NX,
-- which answers how many were new: when all were (the usual case), that is the whole check,
-- one command for the batch where there used to be a SET NX PX per event. Otherwise one
-- ZMSCORE tells which: a member added by this call has this call's end, which no other call
-- has (each reads TIME again, later). Versions before 2026-12-07 kept a string key
-- `<prefix>:dd:<source> <id>` per event with the window as its TTL; one EXISTS over the
-- batch's would-be keys still finds those until they expire.
local window = tonumber(ARGV[2])
local delayed = tonumber(ARGV[3])
local first = 4 + 2 * delayed
local n = (#ARGV - first + 1) / 3
if n == 0 then return {} end
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now = math.floor(now_us / 1000)
-- As strings: Redis formats a Lua number argument with printf on every call.
local now_s = string.format('%.0f', now_us)
local ends_s = string.format('%.0f', now_us + window * 1000)

-- Lua unpacks at most a few thousand values at once: long lists go in slices.
local SLICE = 1000
local function sliced(list, step, call)
  for from = 1, #list, step do call(unpack(list, from, math.min(from + step - 1, #list))) end
end

local members, legacy = {}, {}
local legacy_prefix = P .. ':dd:'
for j = 1, n do
  local m = ARGV[first + 3 * j - 2]
  members[j] = m
  legacy[j] = legacy_prefix .. m
end
local some_legacy = false
sliced(legacy, SLICE, function(...)
  some_legacy = some_legacy or redis.call('EXISTS', ...) > 0
end)

-- fresh[m] = the number of the event stored for member m; later repeats are duplicates.
local fresh, candidates, add = {}, {}, {}
for j = 1, n do
  local m = members[j]
  if not fresh[m] and not (some_legacy and redis.call('EXISTS', legacy[j]) == 1) then
    fresh[m] = j
    candidates[#candidates + 1] = m
    add[#add + 1] = ends_s
    add[#add + 1] = m
  end
end
local dd = k('dd')
redis.call('ZREMRANGEBYSCORE', dd, '-inf', now_s)
local added = 0
sliced(add, 2 * SLICE, function(...) added = added + redis.call('ZADD', dd, 'NX', ...) end)
if added < #candidates then
  local ends_at = tonumber(ends_s)
  sliced(candidates, SLICE, function(...)
    local got, ms = redis.call('ZMSCORE', dd, ...), {...}
    for i = 1, #ms do
      if tonumber(got[i]) ~= ends_at then fresh[ms[i]] = nil end
    end
  end)
end

local due, dropped = {}, {}
for i = 4, first - 1, 2 do due[tonumber(ARGV[i])] = tonumber(ARGV[i + 1]) end
for j = 1, n do
  local i = first + 3 * (j - 1)
  if fresh[members[j]] == j then
    local topic, event = ARGV[i], ARGV[i + 2]
    local at = due[j]
    if at and at > now then
      local seq = redis.call('INCR', k('delayed_seq'))
      redis.call('ZADD', k('delayed'), at, seq .. '\n' .. topic .. '\n' .. event)
    else
      route(topic, event)
    end
  else
    dropped[#dropped + 1] = j
  end
end
count_routed()
return dropped
