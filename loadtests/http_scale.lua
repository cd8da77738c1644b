-- wrk script of loadtests/bench_http_scale.py: every request carries a bearer token, tokens and
-- paths taken in turn from two files (one per line); statuses counted per thread; at the end
-- the latency histogram (microseconds, "value count" per line) and the counts are written to
-- a file, so that the runs against several workers can be merged exactly.
--
-- WRK_OUT=out.txt [WRK_THINK_MS=ms] wrk -c N -d S -s loadtests/http_scale.lua URL -- tokens.txt paths.txt offset
--
-- With WRK_THINK_MS each connection waits a random time, uniform in 0.5..1.5 times that mean,
-- before each request, as a reporter reading every so often: N connections then offer about
-- N / think requests a second whatever the answers' latency, as long as it is well under the
-- think time. wrk times a request from its write, so the think time is not in the latencies.
--
-- wrk calls delay() before a connection's first request too. Were that first wait drawn like
-- the others, every connection would start inside 0.5..1.5 think times, and the first and
-- second requests would overlap: nothing for half a think time, then N / think a second
-- rising to about 1.5 N / think at 1.5 think times (a "600 req/s" run peaked near 900). So
-- the first wait of each of the thread's WRK_FIRST connections is drawn from the renewal
-- process's equilibrium (forward recurrence) distribution instead, density P(wait > x) /
-- think: uniform on 0..0.5 think with probability 1/2, else 1.5 think - think * sqrt(U)
-- (density falling linearly to 0 at 1.5 think). Then the requests arrive at N / think a
-- second from the first second on (a stationary renewal process; Cox, "Renewal Theory",
-- 1962, section 5.2).
--
-- Each request's second (os.time) is counted, so the run can print the offered rate it got.

local tokens, paths = {}, {}
local ti, pi = 0, 0
counts = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_index", #threads - 1)
end

function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  for line in io.lines(args[2]) do paths[#paths + 1] = line end
  -- each thread its own place in the lists and its own random think times (one seed for
  -- all threads would make their connections think in step: bursts of -t requests)
  local offset = tonumber(args[3] or "0") + (thread_index or 0) * 104729
  ti = offset % #tokens
  pi = offset % #paths
  math.randomseed(offset + 1)
end

arrivals = {}

function request()
  local second = os.time()
  arrivals[second] = (arrivals[second] or 0) + 1
  ti = ti % #tokens + 1
  pi = pi % #paths + 1
  return wrk.format("GET", paths[pi], { ["Authorization"] = "Bearer " .. tokens[ti] })
end

local think_ms = tonumber(os.getenv("WRK_THINK_MS") or "0")
local first_left = tonumber(os.getenv("WRK_FIRST") or "0")
if think_ms > 0 then
  function delay()
    if first_left > 0 then
      first_left = first_left - 1
      local u = math.random()
      if u < 0.5 then
        return math.floor(think_ms * u)
      end
      return math.floor(think_ms * (1.5 - math.sqrt(math.random())))
    end
    return math.floor(think_ms * (0.5 + math.random()))
  end
end

samples = {}

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status ~= 200 and samples[status] == nil then
    samples[status] = string.sub(body or "", 1, 300)
  end
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("WRK_OUT"), "w"))
  out:write(string.format("duration_us %d\n", summary.duration))
  out:write(string.format("requests %d\n", summary.requests))
  out:write(string.format("bytes %d\n", summary.bytes))
  for _, kind in ipairs({ "connect", "read", "write", "status", "timeout" }) do
    out:write(string.format("error_%s %d\n", kind, summary.errors[kind]))
  end
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for status, n in pairs(c) do
      out:write(string.format("status %d %d\n", status, n))
    end
    for second, n in pairs(thread:get("arrivals")) do
      out:write(string.format("second %d %d\n", second, n))
    end
    for status, body in pairs(thread:get("samples")) do
      out:write(string.format("sample %d %s\n", status, string.gsub(body, "\n", " ")))
    end
  end
  for i = 1, #latency do
    local value, count = latency(i)
    out:write(string.format("h %d %d\n", value, count))
  end
  out:close()
end
