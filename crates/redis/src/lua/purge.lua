-- ARGV: prefix, group, then dead-letter ids (none: all of the group's). Answers the count.
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
return purge(ARGV[2], ids)
