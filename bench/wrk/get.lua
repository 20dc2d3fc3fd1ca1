-- GET PATH (default /) as a first-time visitor: no cookie. Every request is
-- the same, so wrk builds it once. Headers (Host, Accept-Encoding, ...) come
-- from the command line (-H).
--
--   wrk ... -s get.lua URL -- [PATH]
local report = dofile("report.lua")

function init(args)
  if args[1] then
    wrk.path = args[1]
  end
end

done = report.done
