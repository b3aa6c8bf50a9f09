-- wrk script: GET /messages/<digest>, cycling through a list of known digests.
--
--   wrk ... -s bench/wrk/get.lua <base-url> -- <digests-file>
--
-- <digests-file> holds one digest per line. Requests are formatted once in
-- init(); each thread starts at a different offset of the list. done() prints
-- one machine-readable "BENCH ..." line (latencies in microseconds).

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   local path = args[1]
   if not path then
      error("usage: wrk -s get.lua <url> -- <digests-file>")
   end
   reqs = {}
   for line in io.lines(path) do
      if #line > 0 then
         reqs[#reqs + 1] = wrk.format("GET", "/messages/" .. line)
      end
   end
   n = #reqs
   if n == 0 then
      error("no digests in " .. path)
   end
   i = ((id - 1) * 997) % n
end

function request()
   i = i % n + 1
   return reqs[i]
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
