//! When to try again.

use std::time::Duration;

use crate::config::DeliverySettings;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub multiplier: f64,
    pub max: Duration,
    pub jitter: f64,
    pub retry_after_max: Duration,
}

impl RetryPolicy {
    pub fn from_settings(s: &DeliverySettings) -> Self {
        Self {
            max_attempts: s.max_attempts,
            initial: s.backoff_initial,
            multiplier: s.backoff_multiplier,
            max: s.backoff_max,
            jitter: s.jitter,
            retry_after_max: s.retry_after_max,
        }
    }

    /// The delay before the attempt that follows failed attempt `attempt` (1-based),
    /// before jitter: `initial * multiplier^(attempt-1)`, capped at `max`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }

    /// [`base_delay`](Self::base_delay) moved by `spread` (from -1 to 1) of the
    /// jitter band, so deliveries that failed together do not all come back together.
    pub fn delay(&self, attempt: u32, spread: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let spread = spread.clamp(-1.0, 1.0) * self.jitter;
        Duration::from_secs_f64((base * (1.0 + spread)).max(0.0))
    }

    /// A draw for [`delay`](Self::delay)'s `spread`.
    pub fn draw_spread() -> f64 {
        rand::random_range(-1.0..=1.0)
    }

    /// Whether attempt `attempt` was the last one allowed.
    pub fn exhausted(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }

    /// A partner's `Retry-After`, never longer than configured.
    pub fn cap_retry_after(&self, d: Duration) -> Duration {
        d.min(self.retry_after_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy() -> RetryPolicy {
        let s = crate::config::Settings::load_from(Vec::<(String, String)>::new()).unwrap();
        RetryPolicy::from_settings(&s.delivery)
    }

    #[test]
    fn default_schedule_is_five_attempts_over_about_a_day() {
        let p = default_policy();
        assert_eq!(p.max_attempts, 5);
        let total: Duration = (1..p.max_attempts).map(|a| p.base_delay(a)).sum();
        let hours = total.as_secs_f64() / 3600.0;
        assert!(
            (23.0..=26.0).contains(&hours),
            "the four waits add up to {hours:.1}h"
        );
        assert_eq!(p.base_delay(1), Duration::from_secs(60));
        assert!(p.base_delay(2) > p.base_delay(1) && p.base_delay(4) > p.base_delay(3));
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let p = default_policy();
        for _ in 0..1000 {
            let d = p.delay(2, RetryPolicy::draw_spread()).as_secs_f64();
            let base = p.base_delay(2).as_secs_f64();
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "{d} vs {base}"
            );
        }
        let base = p.base_delay(3);
        assert_eq!(p.delay(3, 0.0), base);
        assert_eq!(p.delay(3, 1.0), base.mul_f64(1.2));
        assert_eq!(p.delay(3, -1.0), base.mul_f64(0.8));
    }

    #[test]
    fn delays_are_capped() {
        let mut p = default_policy();
        p.max = Duration::from_secs(300);
        assert_eq!(p.base_delay(10), Duration::from_secs(300));
        assert_eq!(
            p.cap_retry_after(Duration::from_secs(999_999)),
            p.retry_after_max
        );
    }
}
