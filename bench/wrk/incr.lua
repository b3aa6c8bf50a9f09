-- wrk script: POST /increment {"key":"k<n>","value":1} with <n> picked at
-- random in 0..<keys>-1 on every request.
--
--   wrk ... -s bench/wrk/incr.lua <base-url> -- <keys>
--
-- Every thread seeds its own generator. Up to 200000 keys the requests are
-- formatted once in init(), so wrk spends its time sending rather than
-- building strings. done() prints one machine-readable "BENCH ..." line
-- (latencies in microseconds).

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

local function format(n)
   return wrk.format("POST", "/increment", headers, '{"key":"k' .. n .. '","value":1}')
end

function init(args)
   keys = tonumber(args[1] or "")
   if not keys or keys < 1 or keys ~= math.floor(keys) then
      error("usage: wrk -s incr.lua <url> -- <keys>")
   end
   math.randomseed(os.time() * 1000 + id * 7919)
   headers = { ["Content-Type"] = "application/json" }
   if keys <= 200000 then
      reqs = {}
      for n = 0, keys - 1 do
         reqs[n + 1] = format(n)
      end
   end
end

function request()
   if reqs then
      return reqs[math.random(1, keys)]
   end
   return format(math.random(0, keys - 1))
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
