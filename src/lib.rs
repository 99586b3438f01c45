//! Button delivery service for Signal.
//!
//! An event's trip, one module per stage: [`http`] receives it, [`ingest`] validates
//! and routes it, [`mapping`] turns it into the exact Button request through the
//! integration's [`blueprint`] (the mapping is data, from the [`catalog`]), [`store`]
//! keeps it and queues its deliveries, [`delivery`] sends them with the [`button`]
//! client, and [`live_logs`] records every attempt.
#![forbid(unsafe_code)]

pub mod blueprint;
pub mod button;
pub mod catalog;
pub mod config;
pub mod delivery;
pub mod error;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod integrations;
pub mod live_logs;
pub mod mapping;
pub mod metrics;
pub mod secrets;
pub mod startup;
pub mod store;
pub mod telemetry;
