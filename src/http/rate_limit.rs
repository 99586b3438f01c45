//! The admin API's rate limit (Signal's convention: 100 requests a minute per caller):
//! a token bucket per admin token, refilled continuously, holding at most a minute's
//! worth. Over it, `429` with `Retry-After` (whole seconds until one request fits).
//! Kept in memory, so with several replicas each one counts its own requests.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimit {
    per_minute: u32,
    /// Per caller (its admin token's index): tokens left, and when they were counted.
    buckets: Mutex<Vec<(f64, Instant)>>,
}

impl RateLimit {
    /// `per_minute` requests a minute for each of `callers`; 0 is no limit.
    pub fn new(per_minute: u32, callers: usize) -> Self {
        let now = Instant::now();
        Self {
            per_minute,
            buckets: Mutex::new(vec![(f64::from(per_minute), now); callers]),
        }
    }

    /// Takes one request's token for `caller`, or says how long until one is free.
    pub fn take(&self, caller: usize, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some((tokens, at)) = buckets.get_mut(caller) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * per_second).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_minute_then_waits_and_others_are_not_touched() {
        let limit = RateLimit::new(100, 2);
        let start = Instant::now();
        for _ in 0..100 {
            assert!(limit.take(0, start).is_ok());
        }
        let wait = limit.take(0, start).unwrap_err();
        assert!(
            wait > Duration::from_millis(590) && wait <= Duration::from_millis(600),
            "{wait:?}"
        );
        assert!(
            limit.take(1, start).is_ok(),
            "another token has its own bucket"
        );
        assert!(limit.take(0, start + Duration::from_millis(600)).is_ok());
        assert!(RateLimit::new(0, 1).take(0, start).is_ok(), "0 is no limit");
    }
}
