-- wrk script: POST /receipts/jobs with a legacy sandbox receipt (as
-- `quintet apple-sim` reads them) whose transaction id is new on every
-- request, so every job is validated and claimed, never "already validated".
--
--   wrk ... -s bench/wrk/receipt-job.lua <base-url> -- <run-number>
--
-- Transaction ids: <run-number> (1..999), thread number, per-thread counter.
-- done() prints one machine-readable "BENCH ..." line.

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Base64 (RFC 4648, padded) of a Lua string.
local function b64(data)
   local out = {}
   for i = 1, #data, 3 do
      local a, b, c = data:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(n / 262144) % 64
      local c2 = math.floor(n / 4096) % 64
      local c3 = math.floor(n / 64) % 64
      local c4 = n % 64
      out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1)
         .. (b and alphabet:sub(c3 + 1, c3 + 1) or "=") .. (c and alphabet:sub(c4 + 1, c4 + 1) or "=")
   end
   return table.concat(out)
end

function init(args)
   run = tonumber(args[1] or "1")
   counter = 0
   headers = { ["Content-Type"] = "application/json" }
end

function request()
   counter = counter + 1
   local tx = string.format("4%03d%03d%09d", run, id, counter)
   local info = b64('{\n\t"transaction-id" = "' .. tx .. '";\n\t"product-id" = "coins";\n}')
   local receipt = b64('{\n\t"purchase-info" = "' .. info .. '";\n\t"environment" = "Sandbox";\n}')
   local body = '{"receipt":"' .. receipt .. '","user_id":' .. counter .. ',"post_queue":"results"}'
   return wrk.format("POST", "/receipts/jobs", headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("BENCH requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout))
end
