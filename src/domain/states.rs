//! The states and outcomes an event's deliveries go through, each declared once.

use super::words::{worded, words};

words! {
    /// Where a delivery (one event on its way to one integration) stands in the queue:
    /// - `pending`: waiting to be sent, leased, or waiting for its next attempt;
    /// - `delivered`: Button has it;
    /// - `failed`: Button refused it and trying again would not help;
    /// - `dead`: it used up its attempts (a dead letter, kept for replay);
    /// - `filtered`: kept from Button (no marketing consent), never sent;
    /// - `mapping_failed`: the event lacked what the Button request needs, never sent;
    /// - `discarded`: a dead letter an operator discarded.
    pub enum DeliveryState {
        Pending = "pending", Delivered = "delivered", Failed = "failed", Dead = "dead",
        Filtered = "filtered", MappingFailed = "mapping_failed", Discarded = "discarded",
    }
}

words! {
    /// What an integration's lane is set to, as stored with the integration:
    /// - `active`: delivering;
    /// - `auth_failed`: Button refused the api_key; deliveries wait for a new key or a
    ///   resume;
    /// - `paused`: paused by an operator; events keep queueing.
    pub enum LaneState {
        Active = "active", AuthFailed = "auth_failed", Paused = "paused",
    }
}

/// What a lane is doing right now (stats and metrics): as its integration's lane is set,
/// or `rate_limited` while Button's `Retry-After` holds it, or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaneCondition {
    Set(LaneState),
    RateLimited,
    Disabled,
}

impl LaneCondition {
    /// Every condition, in the order metrics list them.
    pub const ALL: &'static [Self] = &[
        Self::Set(LaneState::Active),
        Self::RateLimited,
        Self::Set(LaneState::AuthFailed),
        Self::Set(LaneState::Paused),
        Self::Disabled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Set(state) => state.as_str(),
            Self::RateLimited => "rate_limited",
            Self::Disabled => "disabled",
        }
    }
}

worded!(
    LaneCondition,
    [
        "What a lane is doing right now: as its integration's lane is set, or",
        "`rate_limited` while Button's `Retry-After` holds it, or `disabled`."
    ],
    serialize
);

words! {
    /// What one live-log entry records:
    /// - `delivered`: Button has it (2xx, or `409` on an order it already had);
    /// - `retry_scheduled`: a transient failure; the next attempt is scheduled;
    /// - `failed`: Button refused it and trying again would not help;
    /// - `dead_lettered`: the last allowed attempt failed;
    /// - `filtered`: kept from Button (no marketing consent);
    /// - `mapping_failed`: the event lacked what the Button request needs;
    /// - `paused`: Button refused the api_key; the lane stopped and the delivery waits;
    /// - `remapped`: a stored event mapped again (after a blueprint fix) and queued;
    /// - `held`: a change of an order waits behind an earlier one of the same order
    ///   that failed or was dead-lettered (replaying that one releases it).
    pub enum Outcome {
        Delivered = "delivered", RetryScheduled = "retry_scheduled", Failed = "failed",
        DeadLettered = "dead_lettered", Filtered = "filtered", MappingFailed = "mapping_failed",
        Paused = "paused", Remapped = "remapped", Held = "held",
    }
}

impl From<LaneState> for LaneCondition {
    fn from(state: LaneState) -> Self {
        Self::Set(state)
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
            assert!(LaneCondition::ALL.contains(&LaneCondition::from(*l)), "{l}");
            assert_eq!(LaneCondition::from(*l).as_str(), l.as_str());
        }
    }

    #[test]
    fn an_unknown_word_names_the_words_it_could_have_been() {
        let e = "deliverd".parse::<Outcome>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"deliverd\" is not one of delivered, retry_scheduled, failed, dead_lettered, filtered, mapping_failed, paused, remapped, held"
        );
    }
}
