-- Sign-up POSTs to /, each with a new email address, all with the same CSRF
-- cookie and token and the same sign-up form token (old enough: every POST
-- passes its signature and time checks), as one browser reusing its form
-- would; with MIXED,
-- alternately GET / and a POST (the worker memory measurement). The Origin,
-- Host and Accept-Encoding headers come from the command line (-H).
--
--   wrk ... -s signup.lua URL -- COOKIE TOKEN FORM_TOKEN TAG [mixed]
--
-- Addresses are ada.TAG.THREAD.N@example.com: TAG is new for every run, so
-- no two POSTs of a benchmark share an address and each one adds a row.
local report = dofile("report.lua")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local token, form_token, tag, mixed, form
local counter = 0
local headers = {}

function init(args)
  token, form_token, tag = args[2], args[3], args[4]
  mixed = args[5] == "mixed"
  headers["Content-Type"] = "application/x-www-form-urlencoded"
  headers["Cookie"] = "csrftoken=" .. args[1]
  form = wrk.format("GET", "/", { ["Cookie"] = headers["Cookie"] })
end

function request()
  counter = counter + 1
  if mixed and counter % 2 == 1 then
    return form
  end
  local body = "csrfmiddlewaretoken=" .. token
    .. "&signup_token=" .. form_token
    .. "&name=Ada+Lovelace"
    .. "&email=ada." .. tag .. "." .. thread_number .. "." .. counter
    .. "%40example.com"
  return wrk.format("POST", "/", headers, body)
end

done = report.done
