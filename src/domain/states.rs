//! The states and outcomes an event's deliveries go through, each declared once.

use super::words::words;

words! {
    /// Where a delivery (one event on its way to one integration) stands in the queue.
    pub enum DeliveryState {
        /// Waiting to be sent (or leased, or waiting for its next attempt).
        Pending = "pending",
        /// Button has it.
        Delivered = "delivered",
        /// Button refused it and trying again would not help.
        Failed = "failed",
        /// It used up its attempts: a dead letter, kept for replay.
        Dead = "dead",
        /// Kept from Button (no marketing consent); never sent.
        Filtered = "filtered",
        /// The event lacked what the Button request needs; never sent.
        MappingFailed = "mapping_failed",
        /// A dead letter an operator discarded.
        Discarded = "discarded",
    }
}

words! {
    /// What an integration's lane is set to, as stored with the integration.
    pub enum LaneState {
        /// Delivering.
        Active = "active",
        /// Button refused the api_key; deliveries wait for a new key or a resume.
        AuthFailed = "auth_failed",
        /// Paused by an operator; events keep queueing.
        Paused = "paused",
    }
}

words! {
    /// What a lane is doing right now (stats and metrics): its stored state, or
    /// `rate_limited` while Button's `Retry-After` holds it, or `disabled`.
    pub enum LaneCondition {
        Active = "active",
        RateLimited = "rate_limited",
        AuthFailed = "auth_failed",
        Paused = "paused",
        Disabled = "disabled",
    }
}

words! {
    /// What one live-log entry records.
    pub enum Outcome {
        /// Button has it (2xx, or 409 on an order it already had).
        Delivered = "delivered",
        /// A transient failure; the next attempt is scheduled.
        RetryScheduled = "retry_scheduled",
        /// Button refused it and trying again would not help.
        Failed = "failed",
        /// The last allowed attempt failed.
        DeadLettered = "dead_lettered",
        /// Kept from Button (no marketing consent).
        Filtered = "filtered",
        /// The event lacked what the Button request needs.
        MappingFailed = "mapping_failed",
        /// Button refused the api_key; the lane stopped and this delivery waits.
        Paused = "paused",
    }
}

impl From<LaneState> for LaneCondition {
    fn from(state: LaneState) -> Self {
        match state {
            LaneState::Active => Self::Active,
            LaneState::AuthFailed => Self::AuthFailed,
            LaneState::Paused => Self::Paused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_as_itself() {
        for s in DeliveryState::ALL {
            assert_eq!(s.as_str().parse::<DeliveryState>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(*o));
        }
        for l in LaneState::ALL {
            assert_eq!(LaneCondition::from(*l).as_str(), l.as_str());
        }
    }

    #[test]
    fn an_unknown_word_names_the_words_it_could_have_been() {
        let e = "deliverd".parse::<Outcome>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"deliverd\" is not one of delivered, retry_scheduled, failed, dead_lettered, filtered, mapping_failed, paused"
        );
    }
}
