-- GET among several paths, round robin: BENCH_PATHS="/v1/jobs/a,/v1/jobs/b".
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local paths = {}
for path in string.gmatch(os.getenv("BENCH_PATHS") or "/", "[^,]+") do
  paths[#paths + 1] = path
end
local requests = {}
for i, path in ipairs(paths) do
  requests[i] = wrk.format("GET", path)
end
local next_index = 0

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
