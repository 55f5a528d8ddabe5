-- One admission across every applicable counter, atomically (DESIGN §10); on a connection with
-- prioritization pools, the pool gate runs in the same step (a transcription, line for line, of
-- vmx_core/capacity/allocation.py: decide and allocate).
-- KEYS: n counter hashes, then m pool "used" hashes and m pool "unmet" hashes (m = 0: no pools);
--   fields "r:<bucket>" (requests) and "t:<bucket>" (tokens).
-- ARGV[1] = n, ARGV[2] = m, then 7 per counter: oldest counted bucket, current bucket,
--   max requests (-1: none), max tokens (-1: none), requests to add, tokens to add, idle ttl in
--   ms (0: keep forever); then, when m > 0: the budget counter's index (1-based), the asking
--   pool (1-based), record unmet (1/0), used oldest, used bucket, used ttl, unmet oldest, unmet
--   bucket, unmet ttl, then each pool's minimum and maximum (tokens).
-- Returns {status, r1, t1, ..., rn, tn, used1..usedm, unmet1..unmetm} and, unless admitted,
--   one {bucket, r, t, ...} list per counter and (m > 0) one for the asker's used counter.
-- status 1: admitted, every counter charged (and the asker's used counter); 0: a limit refused;
--   2: only the pool gate refused (the cost goes to the asker's unmet counter if recorded).

local function read(key, oldest)
  local flat = redis.call('HGETALL', key)
  local r, t, per = 0, 0, {}
  for j = 1, #flat, 2 do
    local field = flat[j]
    local b = tonumber(string.sub(field, 3))
    local v = tonumber(flat[j + 1])
    if b < oldest then
      redis.call('HDEL', key, field)
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
  return r, t, per
end

local function charge(key, bucket, add_r, add_t, ttl)
  redis.call('HINCRBY', key, 'r:' .. bucket, add_r)
  redis.call('HINCRBY', key, 't:' .. bucket, add_t)
  if ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  end
end

local function flatten(per)
  local flat = {}
  for b, rt in pairs(per) do
    flat[#flat + 1] = b
    flat[#flat + 1] = rt[1]
    flat[#flat + 1] = rt[2]
  end
  return flat
end

local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local h = 2 + 7 * n
local budget_i = m > 0 and tonumber(ARGV[h + 1]) or 0

-- The limits.
local sums = {}
local buckets = {}
local limits_ok = true
for i = 1, n do
  local a = 2 + (i - 1) * 7
  local max_r = tonumber(ARGV[a + 3])
  local max_t = tonumber(ARGV[a + 4])
  local r, t, per = read(KEYS[i], tonumber(ARGV[a + 1]))
  sums[#sums + 1] = r
  sums[#sums + 1] = t
  buckets[i] = per
  if max_r >= 0 and r + tonumber(ARGV[a + 5]) > max_r then
    limits_ok = false
  end
  -- The budget's tokens are the pool gate's to decide.
  if i ~= budget_i and max_t >= 0 and t + tonumber(ARGV[a + 6]) > max_t then
    limits_ok = false
  end
end

-- The pool gate.
local pool_ok = true
local used, unmet, asker_per = {}, {}, {}
local asker, cost, unmet_bucket, unmet_ttl, used_bucket, used_ttl
if m > 0 then
  asker = tonumber(ARGV[h + 2])
  local used_oldest, unmet_oldest = tonumber(ARGV[h + 4]), tonumber(ARGV[h + 7])
  used_bucket, used_ttl = ARGV[h + 5], tonumber(ARGV[h + 6])
  unmet_bucket, unmet_ttl = ARGV[h + 8], tonumber(ARGV[h + 9])
  local mins, maxs = {}, {}
  for q = 1, m do
    mins[q] = tonumber(ARGV[h + 8 + 2 * q])
    maxs[q] = tonumber(ARGV[h + 9 + 2 * q])
    local _, t, per = read(KEYS[n + q], used_oldest)
    used[q] = t
    if q == asker then
      asker_per = per
    end
    local _, u = read(KEYS[n + m + q], unmet_oldest)
    unmet[q] = u
  end
  local ba = 2 + (budget_i - 1) * 7
  local budget = tonumber(ARGV[ba + 4])
  cost = tonumber(ARGV[ba + 6])
  local spent = sums[2 * budget_i]
  -- allocate()
  local wants, guar, alloc = {}, {}, {}
  local rest = budget
  for q = 1, m do
    wants[q] = used[q] + unmet[q] + (q == asker and cost or 0)
    guar[q] = math.min(mins[q], wants[q])
    alloc[q] = guar[q]
    rest = rest - guar[q]
  end
  rest = math.max(0, rest)
  for q = 1, m do
    if rest <= 0 then
      break
    end
    local extra = math.min(rest, math.min(maxs[q], wants[q]) - alloc[q])
    if extra > 0 then
      alloc[q] = alloc[q] + extra
      rest = rest - extra
    end
  end
  -- decide()
  local within = used[asker] + cost <= mins[asker]
  local held = 0
  for q = 1, m do
    if q < asker then
      held = held + math.max(0, (within and guar[q] or alloc[q]) - used[q])
    elseif q > asker and not within then
      held = held + math.max(0, guar[q] - used[q])
    end
  end
  pool_ok = used[asker] + cost <= alloc[asker] and spent + cost + held <= budget
end

local out = {0}
for _, v in ipairs(sums) do
  out[#out + 1] = v
end
for q = 1, m do
  out[#out + 1] = used[q]
end
for q = 1, m do
  out[#out + 1] = unmet[q]
end

if limits_ok and pool_ok then
  for i = 1, n do
    local a = 2 + (i - 1) * 7
    local add_r, add_t = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
    -- A charge of nothing (a read) creates no bucket.
    if add_r ~= 0 or add_t ~= 0 then
      charge(KEYS[i], ARGV[a + 2], add_r, add_t, tonumber(ARGV[a + 7]))
    end
  end
  if m > 0 then
    charge(KEYS[n + asker], used_bucket, 1, cost, used_ttl)
  end
  out[1] = 1
  return out
end

if limits_ok then
  out[1] = 2
  if ARGV[h + 3] == '1' then
    charge(KEYS[n + m + asker], unmet_bucket, 1, cost, unmet_ttl)
  end
end
for i = 1, n do
  out[#out + 1] = flatten(buckets[i])
end
if m > 0 then
  out[#out + 1] = flatten(asker_per)
end
return out
