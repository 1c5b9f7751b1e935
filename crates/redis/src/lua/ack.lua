-- ARGV: prefix, group, entry id, lease number.
local g, id = ARGV[2], ARGV[3]
local err = check_held(g, id, ARGV[4])
if err then return err end
settle(g, id)
return 1
