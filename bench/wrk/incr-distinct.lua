-- wrk script: POST /increment {"key":"m<n>","value":1} exactly once for every
-- n in 0..<total>-1, then nothing more.
--
--   wrk -t<threads> ... -s bench/wrk/incr-distinct.lua <base-url> -- <total> <threads>
--
-- Thread t (1-based) of <threads> sends n = t-1, t-1+<threads>, ... while
-- n < <total>. Once a thread has sent its share, request() hands wrk an empty
-- request: nothing is written and the connection stays idle. wrk does not
-- stop by itself then: whoever runs it watches the server's answer count and
-- interrupts wrk (SIGINT) when all <total> are answered.
--
-- Before any connection opens, wrk calls request() once on its first thread
-- to check the script; that request is never sent, so it must not use up a
-- key. done() prints one machine-readable "BENCH ..." line (latencies in
-- microseconds; sent = increments handed to wrk for sending).

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   total = tonumber(args[1] or "")
   nthreads = tonumber(args[2] or "")
   if not total or not nthreads or total < 1 or nthreads < 1 then
      error("usage: wrk -t<threads> -s incr-distinct.lua <url> -- <total> <threads>")
   end
   headers = { ["Content-Type"] = "application/json" }
   sent = 0
   checking = (id == 1)
end

function request()
   if checking then
      checking = false
      return wrk.format("POST", "/increment", headers, '{"key":"check","value":1}')
   end
   local n = (id - 1) + nthreads * sent
   if n >= total then
      return ""
   end
   sent = sent + 1
   return wrk.format("POST", "/increment", headers, '{"key":"m' .. n .. '","value":1}')
end

function done(summary, latency, requests)
   local e = summary.errors
   local all = 0
   for _, thread in ipairs(threads) do
      all = all + (thread:get("sent") or 0)
   end
   io.write(string.format(
      "BENCH requests=%d sent=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
      "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d non2xx=%d\n",
      summary.requests, all, summary.duration,
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.timeout, e.status))
end
