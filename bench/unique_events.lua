-- wrk script: POST a distinct joinSpace event on every request, so that
-- each one is stored and none is reported as a duplicate.

local threads_started = 0

function setup(thread)
  thread:set("thread_number", threads_started)
  threads_started = threads_started + 1
end

local sent = 0
local headers = {
  ["Authorization"] = "Bearer bench-secret",
  ["Content-Type"] = "application/json",
}

request = function()
  sent = sent + 1
  local body = string.format(
    '{"_type":"SPACE_USER","eventType":"joinSpace","spaceId":"6571f0c2a9e4b1d3c8e0f001",' ..
    '"userId":"bench-%d-%d","roomId":"main","timestamp":1733328000000}',
    thread_number, sent)
  return wrk.format("POST", "/webhooks/pencil", headers, body)
end
