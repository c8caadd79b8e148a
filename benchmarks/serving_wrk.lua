-- wrk script for the serving benchmark: one routing request per call to /invocations.
--   SAV_LOAD_BODIES   file with one JSON request body per line (written by benchmarks/serving.py)
--   SAV_LOAD_THINK_MS each connection waits this long after an answer before its next request (0: closed loop)
-- Prints one JSON line of results from done(); wrk itself counts non-2xx answers as status errors.
local bodies = {}
local think_ms = tonumber(os.getenv("SAV_LOAD_THINK_MS") or "0")
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  for line in io.lines(os.getenv("SAV_LOAD_BODIES")) do
    bodies[#bodies + 1] = line
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  return wrk.format("POST", "/invocations", headers, bodies[math.random(#bodies)])
end

if think_ms > 0 then
  function delay()
    return think_ms
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "status_errors": %d, "socket_errors": %d, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
