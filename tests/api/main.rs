//! Integration tests: the real service over HTTP on a random port, a real SQLite file in
//! a temporary directory, and a local fake Button that checks requests like the real
//! API. One test binary, so the build links once.

mod admin;
mod client;
mod console;
mod crash;
mod delivery;
mod helpers;
mod live_logs;
mod mapping;
mod openapi;
mod orders;
mod replay;
mod replicas;
mod resilience;
mod secrets;
mod sources;
mod tracking;
