-- wrk script for the hit path: POST form bodies with Basic auth, rotating
-- through KEYS bodies `grant_type=client_credentials&resource=k<N>`, the
-- exact bytes crates/bench's `loader` warms the caches with.
--
--   wrk -t1 -c64 -d10s --latency -s bench/hit.lua http://127.0.0.1:PORT/oauth2/token -- KEYS "Basic ..."
--
-- Requests are formatted once in init(), so the per-request Lua work is an
-- index and a table read, the same for every server under test.

local requests = {}
local count = 1
local next_index = 0

function init(args)
  count = tonumber(args[1]) or 1
  local authorization = args[2] or "Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ="
  for n = 0, count - 1 do
    local body = "grant_type=client_credentials&resource=k" .. n
    requests[n] = wrk.format("POST", nil, {
      ["Authorization"] = authorization,
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, body)
  end
  -- Threads start at different keys so they do not march in step.
  next_index = math.random(0, count - 1)
end

function request()
  local r = requests[next_index]
  next_index = (next_index + 1) % count
  return r
end
