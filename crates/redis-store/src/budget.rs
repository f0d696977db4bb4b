//! The fleet's request budgets in Redis: one hash per group, decided by
//! one Lua script on Redis's own clock.
//!
//! The script is [`BudgetState`](tokencache_core::budget::BudgetState)'s
//! arithmetic, line by line: GCRA with an adaptive rate. It runs on one key,
//! so it is atomic against every replica and cluster-safe; it reads the time
//! with `TIME`, so the replicas' clocks do not matter (Redis 5 and later
//! replicate a script's effects, not the script, so `TIME` is allowed before
//! a write). Numbers are written back with `string.format`: Lua's own
//! conversion keeps 14 digits, too few for microseconds since 1970.

use tokencache_core::StoreError;
use tokencache_core::budget::{
    BudgetLimits, BudgetStanding, SlotAnswer, SlotDecision, SlotRequest, ThrottleReport,
};

/// Decides a slot or records a throttle.
///
/// `KEYS[1]` the group's hash. `ARGV[1]` `slot` or `throttle`,
/// `ARGV[2]` the configured rate, `ARGV[3]` the burst, `ARGV[4]` answers
/// accepted since this replica last told; for `slot`: `ARGV[5]` 1 for a
/// background refresh, `ARGV[6]` the longest wait in µs; for `throttle`:
/// `ARGV[5]` how long ago the throttled request was sent in µs, `ARGV[6]`
/// the `Retry-After` in µs or -1.
///
/// Returns `{granted (1/0), wait or retry-after µs, rate, epoch, learned
/// limit}` (numbers as strings).
pub(crate) const BUDGET_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]
local configured = tonumber(ARGV[2])
local burst = math.max(tonumber(ARGV[3]), 1)
local accepted = tonumber(ARGV[4])
local floor = math.max(configured / 100, 0.1)
local DECREASE, CUBIC_SCALE, SECOND = 0.7, 0.4, 1000000

local f = redis.call('HMGET', KEYS[1], 'na', 'rate', 'dec', 'wr', 'pause', 'an', 'ab', 'as', 'ep')
local na, rate, dec, wr, pause, an, ab, as, ep
if f[1] then
  na, rate, dec, wr = tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
  pause, an, ab, as, ep = tonumber(f[5]), tonumber(f[6]), tonumber(f[7]), tonumber(f[8]), tonumber(f[9])
else
  na, rate, dec, wr, pause, an, ab, as, ep = now, configured, 0, 0, 0, 0, 0, now, 0
end

local function int(x) return string.format('%.0f', x) end
local function real(x) return string.format('%.17g', x) end

local function roll()
  local elapsed = now - as
  if elapsed >= 2 * SECOND then
    an, ab, as = 0, 0, now
  elseif elapsed >= SECOND then
    ab, an, as = an, 0, as + SECOND
  end
end

local function recover()
  if dec == 0 then
    rate = configured
    return
  end
  local elapsed = math.max(now - dec, 0) / 1e6
  local climb = (wr * (1 - DECREASE) / CUBIC_SCALE) ^ (1 / 3)
  local curve = CUBIC_SCALE * (elapsed - climb) ^ 3 + wr
  rate = math.min(math.max(curve, floor), configured)
  if rate >= configured then dec = 0 end
end

local function interval()
  return math.max(math.floor(1e6 / rate), 1)
end

roll()
an = an + accepted

local granted, micros = 1, 0
if op == 'slot' then
  local background = ARGV[5] == '1'
  local max_wait = tonumber(ARGV[6])
  recover()
  local iv = interval()
  local tolerance = iv * (burst - 1)
  local arrival = math.max(na, now)
  local paced = math.max(arrival - tolerance, now)
  if pause <= now then pause = 0 end
  local held = pause > paced
  local allowed = paced
  if held then allowed = pause end
  local wait = allowed - now
  local refused
  if background then refused = wait > 0 else refused = wait > max_wait end
  if refused then
    granted, micros = 0, math.max(wait, iv)
  else
    if held then na = pause + tolerance + iv else na = arrival + iv end
    micros = wait
  end
else
  local sent = now - tonumber(ARGV[5])
  local retry_after = tonumber(ARGV[6])
  if dec == 0 or sent > dec then
    recover()
    roll()
    local measured = math.max(an, ab)
    local throttled_at = rate
    if measured > 0 then throttled_at = math.min(rate, measured) end
    rate = math.max(throttled_at * DECREASE, floor)
    dec = math.max(now, 1)
    wr = throttled_at
    local iv = interval()
    na = now + iv * (burst - 1) + iv
    ep = ep + 1
  end
  if retry_after >= 0 and pause < now + retry_after then
    pause = now + retry_after
    ep = ep + 1
  end
end

redis.call('HSET', KEYS[1], 'na', int(na), 'rate', real(rate), 'dec', int(dec), 'wr', real(wr),
  'pause', int(pause), 'an', int(an), 'ab', int(ab), 'as', int(as), 'ep', int(ep))
redis.call('PEXPIRE', KEYS[1], 3600000)
local limit = rate
if wr > 0 then limit = wr end
return {int(granted), int(micros), real(rate), int(ep), real(limit)}
";

/// Marks a replica alive and counts the live ones, on Redis's clock.
///
/// `KEYS[1]` the replicas' sorted set, `ARGV[1]` the replica's id,
/// `ARGV[2]` its heartbeat's lifetime in ms. Returns the live count.
pub(crate) const HEARTBEAT_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
";

/// The script's arguments after the key, for a slot.
pub(crate) fn slot_args(
    limits: &BudgetLimits,
    request: &SlotRequest,
    accepted: u32,
) -> [String; 6] {
    [
        "slot".to_owned(),
        format!("{:?}", limits.rate_per_sec),
        limits.burst.to_string(),
        accepted.to_string(),
        if request.background { "1" } else { "0" }.to_owned(),
        request.max_wait_micros.to_string(),
    ]
}

/// The script's arguments after the key, for a throttle.
pub(crate) fn throttle_args(
    limits: &BudgetLimits,
    report: &ThrottleReport,
    accepted: u32,
) -> [String; 6] {
    [
        "throttle".to_owned(),
        format!("{:?}", limits.rate_per_sec),
        limits.burst.to_string(),
        accepted.to_string(),
        report.sent_micros_ago.to_string(),
        report
            .retry_after_micros
            .map_or_else(|| "-1".to_owned(), |micros| micros.to_string()),
    ]
}

/// Reads the script's answer.
pub(crate) fn slot_answer(reply: &[String]) -> Result<SlotAnswer, StoreError> {
    let [granted, micros, rate, epoch, limit] = reply else {
        return Err(protocol("the budget script answered with the wrong shape"));
    };
    let micros = micros
        .parse()
        .map_err(|_| protocol("the budget script's wait is not a number"))?;
    let decision = if granted == "1" {
        SlotDecision::Granted {
            wait_micros: micros,
        }
    } else {
        SlotDecision::Refused {
            retry_after_micros: micros,
        }
    };
    Ok(SlotAnswer {
        decision,
        standing: BudgetStanding {
            rate_per_sec: rate
                .parse()
                .map_err(|_| protocol("the budget script's rate is not a number"))?,
            epoch: epoch
                .parse()
                .map_err(|_| protocol("the budget script's epoch is not a number"))?,
            limit_per_sec: limit
                .parse()
                .map_err(|_| protocol("the budget script's limit is not a number"))?,
        },
    })
}

fn protocol(what: &str) -> StoreError {
    StoreError::Protocol(format!("redis budget: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_and_bad_ones_refused() {
        let answer = slot_answer(&[
            "1".to_owned(),
            "25000".to_owned(),
            "14.000000000000002".to_owned(),
            "3".to_owned(),
            "20".to_owned(),
        ])
        .unwrap();
        assert_eq!(
            answer.decision,
            SlotDecision::Granted { wait_micros: 25000 }
        );
        assert_eq!(answer.standing.epoch, 3);
        assert!((answer.standing.rate_per_sec - 14.0).abs() < 1e-9);
        let refused = slot_answer(&[
            "0".to_owned(),
            "100".to_owned(),
            "1".to_owned(),
            "0".to_owned(),
            "1".to_owned(),
        ])
        .unwrap();
        assert_eq!(
            refused.decision,
            SlotDecision::Refused {
                retry_after_micros: 100
            }
        );
        assert!(slot_answer(&["1".to_owned()]).is_err());
        assert!(
            slot_answer(&[
                "1".to_owned(),
                "x".to_owned(),
                "1".to_owned(),
                "0".to_owned(),
                "1".to_owned()
            ])
            .is_err()
        );
    }

    #[test]
    fn rates_travel_exactly() {
        let limits = BudgetLimits {
            rate_per_sec: 0.1 + 0.2,
            burst: 3,
        };
        let args = slot_args(
            &limits,
            &SlotRequest {
                background: true,
                max_wait_micros: 0,
            },
            7,
        );
        assert_eq!(args[1].parse::<f64>().unwrap(), 0.1 + 0.2);
        assert_eq!(&args[3..], ["7", "1", "0"]);
        let throttle = throttle_args(
            &limits,
            &ThrottleReport {
                sent_micros_ago: 5,
                retry_after_micros: None,
            },
            0,
        );
        assert_eq!(&throttle[4..], ["5", "-1"]);
    }
}
