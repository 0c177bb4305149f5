-- One script for every scenario: method and body size from the environment, and the summary
-- printed as one JSON line (prefixed WRK_JSON) for bench/run.py.
local method = os.getenv("WRK_METHOD") or "GET"
local body_bytes = tonumber(os.getenv("WRK_BODY_BYTES") or "0")
wrk.method = method
if body_bytes > 0 then
  wrk.body = string.rep("c", body_bytes)
  wrk.headers["Content-Type"] = "text/plain"
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, ' ..
    '"max_ms": %.3f, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
