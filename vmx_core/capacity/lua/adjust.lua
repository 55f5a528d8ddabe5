-- Reconciliations and refunds: never refused, never below zero.
-- KEYS[i]: a counter hash.  ARGV, 5 per key: bucket, oldest counted bucket, requests delta,
--   tokens delta, idle ttl in ms.
-- A bucket that no longer exists or no longer counts is left alone: reviving it would charge
-- a window that does not hold the admission any more.
for i = 1, #KEYS do
  local a = (i - 1) * 5
  local bucket = ARGV[a + 1]
  if tonumber(bucket) >= tonumber(ARGV[a + 2]) and redis.call('HEXISTS', KEYS[i], 'r:' .. bucket) == 1 then
    local deltas = {{'r:' .. bucket, tonumber(ARGV[a + 3])}, {'t:' .. bucket, tonumber(ARGV[a + 4])}}
    for _, d in ipairs(deltas) do
      if d[2] ~= 0 then
        local v = redis.call('HINCRBY', KEYS[i], d[1], d[2])
        if v < 0 then
          redis.call('HSET', KEYS[i], d[1], 0)
        end
      end
    end
  end
end
return 1
