-- Shared by every script (prepended). ARGV[1] is the bus's key prefix; every key the bus
-- uses is built from it, so a script touches only this bus's keys (single Redis only: the
-- keys a publish touches depend on the declared groups, which Redis Cluster cannot route).
local P = ARGV[1]
local function k(...) return P .. ':' .. table.concat({...}, ':') end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Bus topic patterns: '*' is one segment, a final '>' one or more.
local function matches(pattern, topic)
  local ts = {}
  for s in string.gmatch(topic, '[^.]+') do ts[#ts + 1] = s end
  local i = 0
  for p in string.gmatch(pattern, '[^.]+') do
    i = i + 1
    if p == '>' then return #ts >= i end
    if i > #ts then return false end
    if p ~= '*' and p ~= ts[i] then return false end
  end
  return i == #ts
end

-- The streams of the groups whose pattern matches each topic, worked out once per topic and
-- script call: a script runs atomically, so the group table cannot change under it, and a
-- batch of events on one topic then reads the table and matches the patterns only once.
local group_table = nil
local streams_of = {}
local function targets(topic)
  local found = streams_of[topic]
  if found then return found end
  group_table = group_table or redis.call('HGETALL', k('groups'))
  found = {}
  for i = 1, #group_table, 2 do
    if matches(group_table[i + 1], topic) then found[#found + 1] = k('s', group_table[i]) end
  end
  streams_of[topic] = found
  return found
end

-- Events routed per topic by this call, added to the topic counters once at its end.
local routed = {}

-- Appends the event to the stream of every group whose pattern matches its topic. A script
-- that routes calls count_routed() before it returns.
local function route(topic, event)
  for _, stream in ipairs(targets(topic)) do
    redis.call('XADD', stream, '*', 't', topic, 'e', event)
  end
  routed[topic] = (routed[topic] or 0) + 1
end

-- Adds this call's routed events to the topic counters: one HINCRBY per topic, not per event.
local function count_routed()
  for topic, n in pairs(routed) do
    redis.call('HINCRBY', k('topics'), topic, n)
  end
end

-- The caller still holds lease number ARGV[4] on entry ARGV[3] of group ARGV[2].
local function check_held(g, id, lease)
  if redis.call('HGET', k('held', g), id) ~= lease then
    return redis.error_reply('LEASELOST the lease on ' .. id .. ' was lost')
  end
end

-- Removes a settled entry from its group for good.
local function settle(g, id)
  redis.call('XACK', k('s', g), 'g', id)
  redis.call('XDEL', k('s', g), id)
  redis.call('ZREM', k('due', g), id)
  redis.call('HDEL', k('att', g), id)
  redis.call('HDEL', k('held', g), id)
end

local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return false
end

-- Keeps the per-group dead-letter count (no field once it is zero).
local function dlq_count(g, by)
  if redis.call('HINCRBY', k('dlqn'), g, by) <= 0 then redis.call('HDEL', k('dlqn'), g) end
end

-- Deletes dead letters of group g: those in ids, or all when ids is empty.
local function purge(g, ids)
  local n = 0
  local function drop(id, fields)
    if field(fields, 'g') == g then
      redis.call('XDEL', k('dlq'), id)
      n = n + 1
    end
  end
  if #ids > 0 then
    for _, id in ipairs(ids) do
      local e = redis.call('XRANGE', k('dlq'), id, id)
      if #e > 0 then drop(e[1][1], e[1][2]) end
    end
  else
    for _, e in ipairs(redis.call('XRANGE', k('dlq'), '-', '+')) do drop(e[1], e[2]) end
  end
  if n > 0 then dlq_count(g, -n) end
  return n
end
