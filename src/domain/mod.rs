//! The service's vocabulary, shared by every stage: prefixed ids, the states and
//! outcomes a delivery goes through, field problems, and times. Each word is a type
//! defined once here; text becomes one of them only by parsing (at the HTTP edge, or
//! when a stored row is read), and leaves only through its own rendering.

pub mod clock;
pub mod ids;
pub mod problem;
pub mod states;
pub mod words;

pub use ids::{
    DeliveryId, IntegrationId, InvalidId, LeaseToken, LogId, RequestId, SourceId, TestEventId,
};
pub use problem::FieldError;
pub use states::{DeliveryState, LaneCondition, LaneState, Outcome};
pub use words::UnknownWord;
