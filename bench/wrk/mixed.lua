-- Alternately GET / and a sign-up POST (as signup.lua), for the worker
-- memory measurement: the public pages' whole job, one request after another.
--
--   wrk ... -s mixed.lua URL -- COOKIE TOKEN TAG
local report = dofile("report.lua")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local cookie, token, tag, form
local counter = 0
local headers = {}

function init(args)
  cookie, token, tag = args[1], args[2], args[3]
  headers["Content-Type"] = "application/x-www-form-urlencoded"
  headers["Cookie"] = "csrftoken=" .. cookie
  form = wrk.format("GET", "/", { ["Cookie"] = headers["Cookie"] })
end

function request()
  counter = counter + 1
  if counter % 2 == 1 then
    return form
  end
  local body = "csrfmiddlewaretoken=" .. token
    .. "&name=Grace+Hopper"
    .. "&email=grace." .. tag .. "." .. thread_number .. "." .. counter
    .. "%40example.com"
  return wrk.format("POST", "/", headers, body)
end

done = report.done
