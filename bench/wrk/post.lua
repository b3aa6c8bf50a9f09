-- wrk script: POST /messages with a message that is new on every request, so
-- every request makes the server write (201 Created), never "already stored".
--
--   wrk ... -s bench/wrk/post.lua <base-url> -- <run-tag>
--
-- Uniqueness comes from <run-tag> (distinct per run), the thread number and a
-- per-thread counter. done() prints one machine-readable "BENCH ..." line
-- (latencies in microseconds).

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   local tag = args[1] or tostring(os.time())
   counter = 0
   prefix = '{"message":"benchmark message ' .. tag .. ' thread ' .. id .. ' number '
   headers = { ["Content-Type"] = "application/json" }
end

function request()
   counter = counter + 1
   return wrk.format("POST", "/messages", headers, prefix .. counter .. '"}')
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d bytes=%d rps=%.2f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d non2xx=%d\n",
      summary.requests, summary.duration, summary.bytes,
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.timeout, e.status))
end
