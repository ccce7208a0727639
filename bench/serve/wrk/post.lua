-- One fixed request, sent over and over; counts responses and non-2xx statuses per thread and, with
-- WRK_STOP_AFTER=N (meant for -t1 -c1), stops the thread after exactly N responses
-- and prints WRKSTOPPED (the caller then ends wrk with SIGINT instead of waiting out -d).
-- done() prints one line "WRKJSON {...}": totals, errors and the latency histogram (microseconds,
-- [value, count] pairs, every completed request), from which bench/serve/run.py takes p50 / p99.
--
-- Environment: WRK_METHOD (default POST), WRK_PATH (default /), WRK_BODY_FILE (JSON body, optional),
-- WRK_STOP_AFTER (default 0: run for the whole -d duration).

wrk.method = os.getenv("WRK_METHOD") or "POST"
wrk.path = os.getenv("WRK_PATH") or "/"
local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
   local f = assert(io.open(body_file, "rb"))
   wrk.body = f:read("*a")
   f:close()
   wrk.headers["Content-Type"] = "application/json"
end
local stop_after = tonumber(os.getenv("WRK_STOP_AFTER") or "0")

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

responses = 0
non2xx = 0
first_bad = ""

function response(status, headers, body)
   responses = responses + 1
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if first_bad == "" then
         first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 200)
      end
   end
   if stop_after > 0 and responses == stop_after then
      wrk.thread:stop()
      -- wrk's main thread sleeps for the whole -d duration: the harness sends SIGINT on this line
      io.write("WRKSTOPPED\n")
      io.flush()
   end
end

local function quote(text)
   return '"' .. string.gsub(text, '[%c"\\]', function(c) return string.format("\\u%04x", string.byte(c)) end) .. '"'
end

function done(summary, latency, requests)
   local counted, bad, sample = 0, 0, ""
   for _, thread in ipairs(threads) do
      counted = counted + thread:get("responses")
      bad = bad + thread:get("non2xx")
      if sample == "" then sample = thread:get("first_bad") end
   end
   local pairs_ = {}
   for i = 1, #latency do
      local value, count = latency(i)
      pairs_[#pairs_ + 1] = string.format("[%d,%d]", value, count)
   end
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"duration_us":%d,"requests":%d,"responses":%d,"non2xx":%d,"first_non2xx":%s,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latency_us":[%s]}\n',
      summary.duration, summary.requests, counted, bad, quote(sample),
      e.connect, e.read, e.write, e.status, e.timeout, table.concat(pairs_, ",")))
end
