-- One admission across every applicable counter, atomically (DESIGN §10).
-- KEYS[i]: a hash per counter; fields "r:<bucket>" (requests) and "t:<bucket>" (tokens).
-- ARGV, 7 per key: oldest counted bucket, current bucket, max requests (-1: none),
--   max tokens (-1: none), requests to add, tokens to add, idle ttl in ms (0: keep forever).
-- Returns {1, r1, t1, r2, t2, ...} when every counter fitted and was charged, else
-- {0, r1, t1, ..., {bucket, r, t, bucket, r, t, ...} per key} and nothing is charged.
local n = #KEYS
local sums = {}
local buckets = {}
local ok = 1
for i = 1, n do
  local a = (i - 1) * 7
  local oldest = tonumber(ARGV[a + 1])
  local max_r = tonumber(ARGV[a + 3])
  local max_t = tonumber(ARGV[a + 4])
  local add_r = tonumber(ARGV[a + 5])
  local add_t = tonumber(ARGV[a + 6])
  local flat = redis.call('HGETALL', KEYS[i])
  local r, t = 0, 0
  local per = {}
  for j = 1, #flat, 2 do
    local field = flat[j]
    local b = tonumber(string.sub(field, 3))
    local v = tonumber(flat[j + 1])
    if b < oldest then
      redis.call('HDEL', KEYS[i], field)
    else
      per[b] = per[b] or {0, 0}
      if string.sub(field, 1, 1) == 'r' then
        r = r + v
        per[b][1] = v
      else
        t = t + v
        per[b][2] = v
      end
    end
  end
  sums[#sums + 1] = r
  sums[#sums + 1] = t
  buckets[i] = per
  if (max_r >= 0 and r + add_r > max_r) or (max_t >= 0 and t + add_t > max_t) then
    ok = 0
  end
end
if ok == 1 then
  for i = 1, n do
    local a = (i - 1) * 7
    local bucket = ARGV[a + 2]
    local add_r = tonumber(ARGV[a + 5])
    local add_t = tonumber(ARGV[a + 6])
    -- A charge of nothing (a read) creates no bucket.
    if add_r ~= 0 or add_t ~= 0 then
      redis.call('HINCRBY', KEYS[i], 'r:' .. bucket, add_r)
      redis.call('HINCRBY', KEYS[i], 't:' .. bucket, add_t)
      local ttl = tonumber(ARGV[a + 7])
      if ttl > 0 then
        redis.call('PEXPIRE', KEYS[i], ttl)
      end
    end
  end
  table.insert(sums, 1, 1)
  return sums
end
local out = {0}
for _, v in ipairs(sums) do
  out[#out + 1] = v
end
for i = 1, n do
  local flat = {}
  for b, rt in pairs(buckets[i]) do
    flat[#flat + 1] = b
    flat[#flat + 1] = rt[1]
    flat[#flat + 1] = rt[2]
  end
  out[#out + 1] = flat
end
return out
