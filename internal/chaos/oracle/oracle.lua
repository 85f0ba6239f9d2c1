#!lua name=chaos

-- The chaos test's oracle: a critical section kept by a second Redis,
-- outside the lock under test. Keys:
--   cs        how many holds are inside (INCR on enter, DECR on leave)
--   inside    hash: hold -> fencing token, for every hold inside
--   current   the hold that entered last with a token not below any before
--             (with fencing, the newest holder; without, the last to enter)
--   maxtoken  the highest fencing token that entered: the fence
--   writes    how many steps the fence let through
-- Times are the oracle's clock, in microseconds since the Unix epoch.

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- enter(hold, token) -> {n, time, regressed, other holds inside...}
-- n is what INCR cs returned: 1 unless another hold is inside. regressed is
-- 1 when token is below one that entered before: a stale holder (paused
-- while a newer one took over), or a fence that went back (a restart that
-- lost the counter).
redis.register_function('enter', function(_, args)
  local hold, token = args[1], tonumber(args[2])
  local n = redis.call('INCR', 'cs')
  local reply = {n, now(), 0}
  for _, h in ipairs(redis.call('HKEYS', 'inside')) do
    table.insert(reply, h)
  end
  redis.call('HSET', 'inside', hold, token)
  local max = tonumber(redis.call('GET', 'maxtoken') or '0')
  if token >= max then
    redis.call('SET', 'maxtoken', token)
    redis.call('SET', 'current', hold)
  else
    reply[3] = 1 -- a stale holder: it supersedes nobody
  end
  return reply
end)

-- step(hold, token) -> {superseded, refused, time}
-- One write of the critical section. superseded: a newer hold entered
-- after this one (see current). refused: the fence turned the write down,
-- its token being below the highest that entered (token 0, no fencing, is
-- never refused).
redis.register_function('step', function(_, args)
  local hold, token = args[1], tonumber(args[2])
  local superseded, refused = 0, 0
  if redis.call('GET', 'current') ~= hold then
    superseded = 1
  end
  if token > 0 and token < tonumber(redis.call('GET', 'maxtoken') or '0') then
    refused = 1
  else
    redis.call('INCR', 'writes')
  end
  return {superseded, refused, now()}
end)

-- leave(hold) -> time. Idempotent: only a hold that is inside counts down.
redis.register_function('leave', function(_, args)
  if redis.call('HDEL', 'inside', args[1]) == 1 then
    redis.call('DECR', 'cs')
  end
  return now()
end)

-- sweep(prefix) -> how many holds it took out of the critical section:
-- those of a process that was killed inside it, whose holds start with
-- prefix.
redis.register_function('sweep', function(_, args)
  local prefix, swept = args[1], 0
  for _, h in ipairs(redis.call('HKEYS', 'inside')) do
    if string.sub(h, 1, #prefix) == prefix then
      redis.call('HDEL', 'inside', h)
      redis.call('DECR', 'cs')
      swept = swept + 1
    end
  end
  return swept
end)
