-- One GCRA step on one key, on the server's clock, so replicas whose clocks disagree still
-- share one budget. Mirrors flotilla_resilience::shared_rate_limit::gcra::step (whole
-- microseconds). The key holds the theoretical arrival time (TAT) and expires when the key
-- is back to a full burst, so idle callers leave nothing behind.
-- KEYS[1] the caller's key; ARGV[1] emission interval (us); ARGV[2] burst.
-- Returns {allowed 0|1, remaining, retry_after_us, reset_after_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local capacity = interval * tonumber(ARGV[2])
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
local new_tat = tat + interval
local allow_at = new_tat - capacity
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local ahead = new_tat - now
redis.call('SET', KEYS[1], string.format('%d', new_tat),
  'PX', string.format('%d', math.ceil(ahead / 1000)))
return {1, math.floor((capacity - ahead) / interval), 0, ahead}
