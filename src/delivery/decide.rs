//! The rule of delivery: what follows from one attempt. A pure function of Button's
//! answer, the attempt's number, the retry policy and the time, so every row of the
//! README's "What happens to Button's answer" is a line of the table test below.

use std::time::{Duration, SystemTime};

use super::RetryPolicy;
use crate::button::{Attempt, Auth, Classification};
use crate::domain::{DeliveryState, Outcome};

/// What an attempt's answer was, as far as the rule needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// What Button's answer means (see [`crate::button::classify`]).
    pub classification: Classification,
    /// Button's status; `None` when it did not answer (connection failed, timed out).
    pub status: Option<u16>,
    /// The credentials the request carried.
    pub auth: Auth,
}

impl Answered {
    pub fn of(attempt: &Attempt, auth: Auth) -> Self {
        Self {
            classification: attempt.classification,
            status: attempt.status.map(|s| s.as_u16()),
            auth,
        }
    }
}

/// What to do with the delivery (and its lane) after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Button has it.
    Delivered,
    /// Try again at `at`. Button's `Retry-After` on a `429` or `503` also holds the
    /// whole lane until `hold_lane_until`.
    Retry {
        at: SystemTime,
        hold_lane_until: Option<SystemTime>,
    },
    /// That was the last attempt allowed: a dead letter (the lane may be held too).
    DeadLetter { hold_lane_until: Option<SystemTime> },
    /// Trying again would not help.
    Fail,
    /// Button refused the api_key: stop the lane; this delivery waits with the rest,
    /// its attempt not counted.
    PauseLane,
}

/// Decides what follows attempt `number` (1 for the first) given `answer`, at `now`.
/// `spread` (from -1 to 1) places the retry within the policy's jitter band.
pub fn decide(
    answer: &Answered,
    number: u32,
    policy: &RetryPolicy,
    now: SystemTime,
    spread: f64,
) -> Decision {
    match answer.classification {
        Classification::Delivered => Decision::Delivered,
        Classification::Retryable { retry_after } => {
            let holds_lane = matches!(answer.status, Some(429 | 503));
            let hold_lane_until = retry_after
                .filter(|_| holds_lane)
                .map(|d| now + policy.cap_retry_after(d));
            if policy.exhausted(number) {
                Decision::DeadLetter { hold_lane_until }
            } else {
                let wait = retry_after
                    .map(|d| policy.cap_retry_after(d))
                    .unwrap_or_else(|| policy.delay(number, spread));
                Decision::Retry {
                    at: now + wait,
                    hold_lane_until,
                }
            }
        }
        Classification::Terminal if answer.status == Some(401) && answer.auth == Auth::ApiKey => {
            Decision::PauseLane
        }
        Classification::Terminal => Decision::Fail,
    }
}

impl Decision {
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Delivered => Outcome::Delivered,
            Self::Retry { .. } => Outcome::RetryScheduled,
            Self::DeadLetter { .. } => Outcome::DeadLettered,
            Self::Fail => Outcome::Failed,
            Self::PauseLane => Outcome::Paused,
        }
    }

    /// The delivery's state afterwards.
    pub fn state(&self) -> DeliveryState {
        match self {
            Self::Delivered => DeliveryState::Delivered,
            Self::Retry { .. } | Self::PauseLane => DeliveryState::Pending,
            Self::DeadLetter { .. } => DeliveryState::Dead,
            Self::Fail => DeliveryState::Failed,
        }
    }

    /// Whether the attempt is spent from the delivery's budget.
    pub fn counts_attempt(&self) -> bool {
        !matches!(self, Self::PauseLane)
    }

    /// When the delivery is next due (for one still pending).
    pub fn due_at(&self, now: SystemTime) -> SystemTime {
        match self {
            Self::Retry { at, .. } => *at,
            _ => now,
        }
    }

    /// When the next attempt is, as Live Logs shows it.
    pub fn next_attempt_at(&self) -> Option<SystemTime> {
        match self {
            Self::Retry { at, .. } => Some(*at),
            _ => None,
        }
    }

    pub fn hold_lane_until(&self) -> Option<SystemTime> {
        match self {
            Self::Retry {
                hold_lane_until, ..
            }
            | Self::DeadLetter { hold_lane_until } => *hold_lane_until,
            _ => None,
        }
    }
}

/// How long `until` is from `now` (zero once past).
pub fn remaining(until: SystemTime, now: SystemTime) -> Duration {
    until.duration_since(now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::button::{CallKind, classify};
    use reqwest::StatusCode;

    const NOW: Duration = Duration::from_secs(1_700_000_000);
    const S: fn(u64) -> Duration = Duration::from_secs;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial: S(60),
            multiplier: 11.0,
            max: S(24 * 3600),
            jitter: 0.2,
            retry_after_max: S(3600),
        }
    }

    /// Button's answer to `call` as the client classifies it: `status` (0: no
    /// answer) with an optional `Retry-After`.
    fn answer(call: CallKind, status: u16, retry_after: Option<Duration>) -> Answered {
        let classification = match status {
            0 => Classification::Retryable { retry_after: None },
            s => classify(call, StatusCode::from_u16(s).unwrap(), retry_after, "").classification,
        };
        Answered {
            classification,
            status: (status != 0).then_some(status),
            auth: call.auth(),
        }
    }

    #[test]
    fn every_answer_has_its_decision() {
        use CallKind::{ActivityAddToCart as Activity, OrderCreate as Order};
        let now = SystemTime::UNIX_EPOCH + NOW;
        let at = |d: Duration| now + d;
        let retry = |wait: Duration, hold: Option<Duration>| Decision::Retry {
            at: at(wait),
            hold_lane_until: hold.map(at),
        };
        // (README row, call, status (0: no answer), Retry-After, attempt, decision)
        type Row = (&'static str, CallKind, u16, Option<Duration>, u32, Decision);
        let rows: Vec<Row> = vec![
            ("2xx", Order, 200, None, 1, Decision::Delivered),
            ("2xx", Order, 201, None, 1, Decision::Delivered),
            ("2xx", Activity, 202, None, 3, Decision::Delivered),
            (
                "409 on an order create",
                Order,
                409,
                None,
                1,
                Decision::Delivered,
            ),
            (
                "409 elsewhere is another 4xx",
                Activity,
                409,
                None,
                1,
                Decision::Fail,
            ),
            ("408", Order, 408, None, 1, retry(S(60), None)),
            ("429", Order, 429, None, 2, retry(S(660), None)),
            ("5xx", Order, 500, None, 3, retry(S(7260), None)),
            ("5xx", Activity, 502, None, 4, retry(S(79_860), None)),
            (
                "connection error or timeout",
                Order,
                0,
                None,
                1,
                retry(S(60), None),
            ),
            (
                "Retry-After on 429 holds the lane",
                Order,
                429,
                Some(S(120)),
                1,
                retry(S(120), Some(S(120))),
            ),
            (
                "Retry-After on 503 holds the lane",
                Activity,
                503,
                Some(S(30)),
                2,
                retry(S(30), Some(S(30))),
            ),
            (
                "Retry-After capped by retry_after_max",
                Order,
                429,
                Some(S(99_999)),
                1,
                retry(S(3600), Some(S(3600))),
            ),
            (
                "Retry-After on another 5xx waits, holds nothing",
                Order,
                500,
                Some(S(45)),
                1,
                retry(S(45), None),
            ),
            (
                "then dead_lettered",
                Order,
                500,
                None,
                5,
                Decision::DeadLetter {
                    hold_lane_until: None,
                },
            ),
            (
                "then dead_lettered",
                Order,
                0,
                None,
                5,
                Decision::DeadLetter {
                    hold_lane_until: None,
                },
            ),
            (
                "dead_lettered, the lane still held",
                Order,
                429,
                Some(S(10)),
                5,
                Decision::DeadLetter {
                    hold_lane_until: Some(at(S(10))),
                },
            ),
            (
                "401 on the Orders API",
                Order,
                401,
                None,
                1,
                Decision::PauseLane,
            ),
            (
                "401 on the Orders API, even the last attempt",
                Order,
                401,
                None,
                5,
                Decision::PauseLane,
            ),
            (
                "401 elsewhere is another 4xx",
                Activity,
                401,
                None,
                1,
                Decision::Fail,
            ),
            ("any other 4xx", Order, 400, None, 1, Decision::Fail),
            ("any other 4xx", Order, 403, None, 1, Decision::Fail),
            ("any other 4xx", Activity, 404, None, 1, Decision::Fail),
            ("any other 4xx", Order, 422, None, 2, Decision::Fail),
        ];
        for (row, call, status, retry_after, number, expected) in rows {
            let decided = decide(
                &answer(call, status, retry_after),
                number,
                &policy(),
                now,
                0.0,
            );
            assert_eq!(
                decided, expected,
                "{row}: {call} answered {status}, attempt {number}"
            );
        }
    }

    #[test]
    fn each_decision_names_its_outcome_state_and_budget() {
        let now = SystemTime::UNIX_EPOCH + NOW;
        let retry = Decision::Retry {
            at: now + S(60),
            hold_lane_until: None,
        };
        let dead = Decision::DeadLetter {
            hold_lane_until: Some(now + S(5)),
        };
        let table = [
            (
                Decision::Delivered,
                Outcome::Delivered,
                DeliveryState::Delivered,
                true,
                now,
            ),
            (
                retry,
                Outcome::RetryScheduled,
                DeliveryState::Pending,
                true,
                now + S(60),
            ),
            (dead, Outcome::DeadLettered, DeliveryState::Dead, true, now),
            (
                Decision::Fail,
                Outcome::Failed,
                DeliveryState::Failed,
                true,
                now,
            ),
            (
                Decision::PauseLane,
                Outcome::Paused,
                DeliveryState::Pending,
                false,
                now,
            ),
        ];
        for (decision, outcome, state, counted, due) in table {
            assert_eq!(decision.outcome(), outcome, "{decision:?}");
            assert_eq!(decision.state(), state, "{decision:?}");
            assert_eq!(decision.counts_attempt(), counted, "{decision:?}");
            assert_eq!(decision.due_at(now), due, "{decision:?}");
        }
        assert_eq!(retry.next_attempt_at(), Some(now + S(60)));
        assert_eq!(dead.next_attempt_at(), None);
        assert_eq!(dead.hold_lane_until(), Some(now + S(5)));
    }

    #[test]
    fn jitter_moves_a_retry_within_its_band() {
        let now = SystemTime::UNIX_EPOCH + NOW;
        let a = answer(CallKind::OrderCreate, 503, None);
        let early = decide(&a, 2, &policy(), now, -1.0);
        let late = decide(&a, 2, &policy(), now, 1.0);
        let wait = |d: Decision| remaining(d.next_attempt_at().unwrap(), now).as_secs_f64();
        assert!((wait(early) - 660.0 * 0.8).abs() < 1e-6, "{early:?}");
        assert!((wait(late) - 660.0 * 1.2).abs() < 1e-6, "{late:?}");
    }
}
