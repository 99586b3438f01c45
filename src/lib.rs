//! Button delivery service for Signal.
//!
//! An event's trip, one module per stage: [`http`] receives it, [`ingest`] validates
//! and routes it, [`mapping`] turns it into the exact Button request through the
//! integration's [`blueprint`] (the mapping is data, from the [`catalog`]), [`store`]
//! keeps it and queues its deliveries, [`delivery`] sends them with the [`button`]
//! client, and [`live_logs`] shows every attempt. [`records`] builds what each stage
//! records; [`remap`] maps stored events again after a blueprint fix; [`test_event`]
//! sends one event through an integration at once; the words
//! they all share (ids, states, outcomes) are the [`domain`]'s. The [`console`] is the
//! admin API's browser client, served by the same binary.
#![deny(unsafe_code)]

pub mod blueprint;
pub mod button;
pub mod catalog;
pub mod config;
pub mod console;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod integrations;
pub mod live_logs;
pub mod mapping;
pub mod metrics;
pub mod records;
pub mod remap;
pub mod replicas;
pub mod secrets;
pub mod sources;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod test_event;
