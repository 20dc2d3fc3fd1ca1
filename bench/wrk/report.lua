-- Shared by the bench's wrk scripts: done() prints one line the bench reads,
-- "BENCHJSON {...}", with the run's counts, errors and latency percentiles
-- (microseconds). Loaded with dofile() from this directory, wrk's working
-- directory when the bench runs it.
local report = {}

function report.done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, '
      .. '"status_errors": %d, "timeouts": %d, '
      .. '"p50_us": %.0f, "p90_us": %.0f, "p99_us": %.0f, '
      .. '"mean_us": %.1f, "max_us": %.0f}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end

return report
