import { SWEEP_LIMIT, TPM_RETRY_SCAN } from './quota-store';

/**
 * The Lua scripts of RedisQuotaStore: each operation is one script, so it is atomic
 * across every gateway instance. All keys of one call carry the same `{tenantId}` hash
 * tag (one Cluster slot). The keys a sweep decrements are recorded in the reservation
 * itself; they share that slot too.
 *
 * Numbers: counters are int64 in Redis; deltas pass through Lua doubles and are
 * formatted with %d, exact below 2^53 (inputs are capped far below that).
 *
 * A reservation is `qresv:{T}` field id -> {t, c, k[], s[], x[]} (tokens, cost, token
 * keys, spend keys, their expireAt) plus its expiry in `qresv:{T}:exp`.
 */
const PRELUDE = `
local function int(x) return string.format('%d', x) end
local function get(key) return tonumber(redis.call('GET', key) or '0') end
local function adjust(key, delta, expireAt)
  if delta == 0 then return end
  if delta < 0 and redis.call('EXISTS', key) == 0 then return end
  redis.call('INCRBY', key, int(delta))
  if expireAt > 0 and redis.call('PTTL', key) == -1 then redis.call('PEXPIREAT', key, int(expireAt)) end
end
local function sweep(hkey, zkey, now)
  local ids = redis.call('ZRANGEBYSCORE', zkey, '-inf', int(now), 'LIMIT', 0, ${SWEEP_LIMIT})
  for _, id in ipairs(ids) do
    local raw = redis.call('HGET', hkey, id)
    if raw then
      local r = cjson.decode(raw)
      local t, c = tonumber(r.t), tonumber(r.c)
      for i = 1, #r.k do
        local x = tonumber(r.x[i])
        adjust(r.k[i], -t, x)
        adjust(r.s[i], -c, x)
      end
      redis.call('HDEL', hkey, id)
    end
    redis.call('ZREM', zkey, id)
  end
end
`;

/**
 * A tokens-per-minute window: sorted set `zk` (reservation id -> admission time) and hash
 * `hk` (id -> tokens, `_` -> their sum). `tpmPrune` drops the entries older than the window
 * and returns the sum; `tpmReset` the ms until the oldest entry leaves (0 when empty).
 */
const TPM = `
local function tpmPrune(zk, hk, now, win)
  local sum = tonumber(redis.call('HGET', hk, '_') or '0')
  local old = redis.call('ZRANGEBYSCORE', zk, '-inf', int(now - win))
  if #old > 0 then
    for _, oid in ipairs(old) do
      sum = sum - tonumber(redis.call('HGET', hk, oid) or '0')
      redis.call('HDEL', hk, oid)
    end
    redis.call('ZREMRANGEBYSCORE', zk, '-inf', int(now - win))
    if sum < 0 then sum = 0 end
    redis.call('HSET', hk, '_', int(sum))
  end
  return sum
end
local function tpmReset(zk, now, win)
  local first = redis.call('ZRANGE', zk, 0, 0, 'WITHSCORES')
  if #first == 0 then return 0 end
  -- another instance may have admitted with a slightly later clock: never past one window
  return math.min(win, math.max(0, tonumber(first[2]) + win - now))
end
`;

/**
 * KEYS: reservations, expiries, rpm, the tenant's marker, then per level tokens, spend, then
 *       per tokens-per-minute window its sorted set and hash.
 * ARGV: now, ttlMs, id, tokens, cost (the part that must fit whole: the prompt), rpmLimit
 *       (0 = none), windowMs, requireInit (0|1), wanted, choices, microsPerToken, min (the
 *       completion allowance: see ReserveRequest.completion; wanted 0 = none), then per
 *       level tokenLimit (-1 = none), spendLimit (-1 = none), expireAt (0 = never), then per
 *       window its limit and length (ms).
 * Returns {status, levelIndex | windowIndex | granted, limit | reserved tokens, rpmCount,
 *          rpmResetMs, reserved cost | retryMs (tpm: -1 = never fits), t1, s1, t2, s2, ...,
 *          then per window used, resetMs};
 * status ok | uninitialized | rpm | tokens | budget | tpm. Nothing is written unless ok
 * (but entries that left a window are dropped). The grant mirrors allowance.ts; a
 * reservation id already held answers its grant again and writes nothing (a script resent
 * after a reconnect counts once).
 */
export const RESERVE = `${PRELUDE}${TPM}
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[4]) == 0 then return {'uninitialized', 0, 0, -1, 0, 0} end
local now = tonumber(ARGV[1])
sweep(KEYS[1], KEYS[2], now)
local n = (#ARGV - 12) - (#KEYS - 4)
local m = (#KEYS - 4) / 2 - n
local function wz(j) return KEYS[4 + 2 * n + 2 * j - 1] end
local function wh(j) return KEYS[4 + 2 * n + 2 * j] end
local function wl(j) return tonumber(ARGV[12 + 3 * n + 2 * j - 1]) end
local function ww(j) return tonumber(ARGV[12 + 3 * n + 2 * j]) end
local rpmLimit, win = tonumber(ARGV[6]), tonumber(ARGV[7])
local rpmCount, rpmReset = -1, 0
if rpmLimit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', int(now - win))
  rpmCount = redis.call('ZCARD', KEYS[3])
  if rpmCount > 0 then
    local oldest = tonumber(redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2])
    -- another instance may have logged a request with a slightly later clock: never past one window
    rpmReset = math.min(win, oldest + win - now)
  end
end
local prior = redis.call('HGET', KEYS[1], ARGV[3])
if prior then
  local r = cjson.decode(prior)
  local out = {}
  for i = 1, n do out[2 * i - 1], out[2 * i] = get(KEYS[3 + 2 * i]), get(KEYS[4 + 2 * i]) end
  for j = 1, m do
    out[2 * n + 2 * j - 1] = tpmPrune(wz(j), wh(j), now, ww(j))
    out[2 * n + 2 * j] = tpmReset(wz(j), now, ww(j))
  end
  return {'ok', tonumber(r.g or '0'), int(tonumber(r.t)), rpmCount, rpmReset, int(tonumber(r.c)), unpack(out)}
end
if rpmLimit > 0 and rpmCount >= rpmLimit then return {'rpm', 0, 0, rpmCount, rpmReset, 0} end
local tokens, cost = tonumber(ARGV[4]), tonumber(ARGV[5])
local want, nch, ppt, minc = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local function ccost(c)
  if c <= 0 or ppt <= 0 then return 0 end
  return math.ceil(tonumber(string.format('%.6f', c * ppt)))
end
local out = {}
local refusal, limiting = nil, nil
local g = want
for i = 1, n do
  local ut, us = get(KEYS[3 + 2 * i]), get(KEYS[4 + 2 * i])
  out[2 * i - 1], out[2 * i] = ut, us
  if not refusal then
    local tl, sl = tonumber(ARGV[10 + 3 * i]), tonumber(ARGV[11 + 3 * i])
    if tl >= 0 then
      local room = tl - ut - tokens
      if room < 0 then refusal = {'tokens', i - 1, tl}
      else
        local gt = math.floor(room / nch)
        if gt < g then g, limiting = gt, {'tokens', i - 1, tl} end
      end
    end
    if not refusal and sl >= 0 then
      local room = sl - us - cost
      if room < 0 then refusal = {'budget', i - 1, sl}
      elseif ppt > 0 and ccost(nch * g) > room then
        local gs = math.min(g, math.floor(room / (nch * ppt)))
        while gs > 0 and ccost(nch * gs) > room do gs = gs - 1 end
        while gs < g and ccost(nch * (gs + 1)) <= room do gs = gs + 1 end
        g, limiting = gs, {'budget', i - 1, sl}
      end
    end
  end
end
local tsum = {}
for j = 1, m do
  tsum[j] = tpmPrune(wz(j), wh(j), now, ww(j))
  out[2 * n + 2 * j - 1], out[2 * n + 2 * j] = tsum[j], tpmReset(wz(j), now, ww(j))
  if not refusal then
    local room = wl(j) - tsum[j] - tokens
    if room < 0 then refusal = {'tpm', j - 1, wl(j)}
    else
      local gt = math.floor(room / nch)
      if gt < g then g, limiting = gt, {'tpm', j - 1, wl(j)} end
    end
  end
end
if not refusal and limiting and g < math.min(want, minc) then refusal = limiting end
if refusal then
  local retry = 0
  if refusal[1] == 'tpm' then
    -- until enough tokens leave the window for the least this request needs (oldest first);
    -- never, when that is more than the window holds; among the oldest ${TPM_RETRY_SCAN} entries only,
    -- else until the last of them leaves (a lower bound: a refusal costs the same at any size)
    local j = refusal[2] + 1
    local need = tsum[j] + tokens + nch * math.min(want, minc) - wl(j)
    retry = -1
    if need <= tsum[j] then
      local ids = redis.call('ZRANGE', wz(j), 0, ${TPM_RETRY_SCAN - 1}, 'WITHSCORES')
      local freed = 0
      for k = 1, #ids, 2 do
        freed = freed + tonumber(redis.call('HGET', wh(j), ids[k]) or '0')
        retry = math.min(ww(j), math.max(1, tonumber(ids[k + 1]) + ww(j) - now))
        if freed >= need then break end
      end
    end
  end
  return {refusal[1], refusal[2], refusal[3], rpmCount, rpmReset, int(retry), unpack(out)}
end
tokens = tokens + nch * g
cost = cost + ccost(nch * g)
for j = 1, m do
  redis.call('ZADD', wz(j), int(now), ARGV[3])
  redis.call('HSET', wh(j), ARGV[3], int(tokens))
  redis.call('HINCRBY', wh(j), '_', int(tokens))
  redis.call('PEXPIRE', wz(j), int(2 * ww(j)))
  redis.call('PEXPIRE', wh(j), int(2 * ww(j)))
  out[2 * n + 2 * j - 1], out[2 * n + 2 * j] = tsum[j] + tokens, tpmReset(wz(j), now, ww(j))
end
local tk, sk, xs = {}, {}, {}
for i = 1, n do
  local x = tonumber(ARGV[12 + 3 * i])
  adjust(KEYS[3 + 2 * i], tokens, x)
  adjust(KEYS[4 + 2 * i], cost, x)
  out[2 * i - 1], out[2 * i] = out[2 * i - 1] + tokens, out[2 * i] + cost
  tk[i], sk[i], xs[i] = KEYS[3 + 2 * i], KEYS[4 + 2 * i], ARGV[12 + 3 * i]
end
redis.call('HSET', KEYS[1], ARGV[3], cjson.encode({t = int(tokens), c = int(cost), g = int(g), k = tk, s = sk, x = xs}))
redis.call('ZADD', KEYS[2], int(now + tonumber(ARGV[2])), ARGV[3])
if rpmLimit > 0 then
  redis.call('ZADD', KEYS[3], int(now), ARGV[3])
  redis.call('PEXPIRE', KEYS[3], int(win))
  rpmCount = rpmCount + 1
  if rpmCount == 1 then rpmReset = win end
end
return {'ok', int(g), int(tokens), rpmCount, rpmReset, int(cost), unpack(out)}
`;

/**
 * Exactly once (issue 12 item 5): settle and release leave the reservation id in
 * `qdone:{T}` (sorted set, score = until when it is kept) and do nothing when it is already
 * there, so a script that ran but whose reply was lost and that ioredis resends after a
 * reconnect (autoResendUnfulfilledCommands) counts once. The usage row, when given, is
 * appended to the tenant's ledger stream in the same atomic step (counters and
 * ledger-in-transit always agree); its id is the reservation id, so PostgreSQL inserts it
 * once whatever path it takes.
 */
const ONCE = `
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', int(now))
local function counters(first)
  local out = {}
  for j = first, 4 + 2 * n do out[#out + 1] = get(KEYS[j]) end
  return out
end
-- the reservation's tokens-per-minute entries: set to t tokens (settle), or removed (nil: release)
local function tpmCorrect(t)
  for j = 5 + 2 * n, #KEYS, 2 do
    local prev = redis.call('HGET', KEYS[j + 1], ARGV[2])
    if prev then
      if t then
        redis.call('HSET', KEYS[j + 1], ARGV[2], int(t))
        redis.call('HINCRBY', KEYS[j + 1], '_', int(t - tonumber(prev)))
      else
        redis.call('HDEL', KEYS[j + 1], ARGV[2])
        redis.call('ZREM', KEYS[j], ARGV[2])
        redis.call('HINCRBY', KEYS[j + 1], '_', int(-tonumber(prev)))
      end
    end
  end
end
if redis.call('ZSCORE', KEYS[3], ARGV[2]) then return {2, unpack(counters(5))} end
local function done(ttl, row)
  redis.call('ZADD', KEYS[3], int(now + tonumber(ttl)), ARGV[2])
  if row ~= '' then redis.call('XADD', KEYS[4], '*', 'r', row) end
end
`;

/**
 * KEYS: reservations, expiries, settled, ledger stream, then per level tokens, spend, then
 *       per tokens-per-minute window its sorted set and hash.
 * ARGV: now, id, tokens, cost, markerTtlMs, row ('' = none), then per level expireAt.
 * Returns {late (0|1|2 = already settled or released: nothing done), t1, s1, ...} (counter values after).
 */
export const SETTLE = `${PRELUDE}
local now = tonumber(ARGV[1])
local n = #ARGV - 6
${ONCE}
sweep(KEYS[1], KEYS[2], now)
local raw = redis.call('HGET', KEYS[1], ARGV[2])
local rt, rc, late = 0, 0, 1
if raw then
  local r = cjson.decode(raw)
  rt, rc, late = tonumber(r.t), tonumber(r.c), 0
  redis.call('HDEL', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
local t, c = tonumber(ARGV[3]), tonumber(ARGV[4])
tpmCorrect(t)
local out = {}
for i = 1, n do
  local x = tonumber(ARGV[6 + i])
  adjust(KEYS[3 + 2 * i], t - rt, x)
  adjust(KEYS[4 + 2 * i], c - rc, x)
  out[2 * i - 1], out[2 * i] = get(KEYS[3 + 2 * i]), get(KEYS[4 + 2 * i])
end
done(ARGV[5], ARGV[6])
return {late, unpack(out)}
`;

/**
 * KEYS: reservations, expiries, settled, ledger stream, then per level tokens, spend, then
 *       per tokens-per-minute window its sorted set and hash.
 * ARGV: now, id, markerTtlMs, row ('' = none), then per level expireAt.
 * Returns {1 released | 0 no open reservation (expired) | 2 already settled or released}.
 */
export const RELEASE = `${PRELUDE}
local now = tonumber(ARGV[1])
local n = #ARGV - 4
${ONCE}
sweep(KEYS[1], KEYS[2], now)
local raw = redis.call('HGET', KEYS[1], ARGV[2])
done(ARGV[3], ARGV[4])
tpmCorrect(nil)
if not raw then return {0} end
local r = cjson.decode(raw)
local rt, rc = tonumber(r.t), tonumber(r.c)
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
for i = 1, n do
  local x = tonumber(ARGV[4 + i])
  adjust(KEYS[3 + 2 * i], -rt, x)
  adjust(KEYS[4 + 2 * i], -rc, x)
end
return {1}
`;

/** KEYS: reservations, expiries, counters... ARGV: now. Returns the counters' values. */
export const READ = `${PRELUDE}
sweep(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local out = {}
for j = 3, #KEYS do out[#out + 1] = get(KEYS[j]) end
return out
`;

/** KEYS: reservations, expiries. ARGV: now. Returns the number of open reservations. */
export const PENDING = `${PRELUDE}
sweep(KEYS[1], KEYS[2], tonumber(ARGV[1]))
return redis.call('HLEN', KEYS[1])
`;

/**
 * KEYS: reservations, expiries, the tenant's marker, counters...
 * ARGV: now, markTenant (0|1), skipIfRebuiltSince (epoch ms; 0 = never skip), then per
 * counter value, expireAt.
 * Sets each counter to value + what open reservations hold on it, then (markTenant) the
 * marker to now; writes nothing when the marker says the tenant was rebuilt at or after
 * skipIfRebuiltSince (1: at all).
 * Returns {before, after}... (both the current value when nothing was written).
 */
export const REBUILD = `${PRELUDE}
local out = {}
local since = tonumber(ARGV[3])
if since > 0 and tonumber(redis.call('GET', KEYS[3]) or '0') >= since then
  for j = 4, #KEYS do
    local v = get(KEYS[j])
    out[#out + 1] = v
    out[#out + 1] = v
  end
  return out
end
sweep(KEYS[1], KEYS[2], tonumber(ARGV[1]))
local pend = {}
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
  local r = cjson.decode(raw)
  for i = 1, #r.k do
    pend[r.k[i]] = (pend[r.k[i]] or 0) + tonumber(r.t)
    pend[r.s[i]] = (pend[r.s[i]] or 0) + tonumber(r.c)
  end
end
-- ARGV[4]: "value expireAt value expireAt ..." for KEYS[4..] (one argument instead of two per
-- counter: a 1,000-counter call spends less in the client encoding its arguments)
local j = 4
for v, x in string.gmatch(ARGV[4], '(%S+) (%S+)') do
  local key = KEYS[j]
  j = j + 1
  local after = tonumber(v) + (pend[key] or 0)
  x = tonumber(x)
  -- one command per counter: the new value, its expiry, and the old value back (Redis >= 6.2)
  local old
  if x > 0 then old = redis.call('SET', key, int(after), 'PXAT', int(x), 'GET')
  else old = redis.call('SET', key, int(after), 'GET') end
  local before = tonumber(old or '0')
  out[#out + 1] = before
  out[#out + 1] = after
end
if ARGV[2] == '1' then redis.call('SET', KEYS[3], ARGV[1]) end
return out
`;
