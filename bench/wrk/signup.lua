-- Sign-up POSTs to /, each with a new email address, all with the same CSRF
-- cookie and form token, as one browser reusing its form would. The Origin,
-- Host and Accept-Encoding headers come from the command line (-H).
--
--   wrk ... -s signup.lua URL -- COOKIE TOKEN TAG
--
-- Addresses are ada.TAG.THREAD.N@example.com: TAG is new for every run, so
-- no two POSTs of a benchmark share an address and each one adds a row.
local report = dofile("report.lua")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local cookie, token, tag
local counter = 0
local headers = {}

function init(args)
  cookie, token, tag = args[1], args[2], args[3]
  headers["Content-Type"] = "application/x-www-form-urlencoded"
  headers["Cookie"] = "csrftoken=" .. cookie
end

function request()
  counter = counter + 1
  local body = "csrfmiddlewaretoken=" .. token
    .. "&name=Ada+Lovelace"
    .. "&email=ada." .. tag .. "." .. thread_number .. "." .. counter
    .. "%40example.com"
  return wrk.format("POST", "/", headers, body)
end

done = report.done
