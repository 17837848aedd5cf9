//! pencil-bridge turns Pencil Spaces webhook events into Slack, Discord,
//! email and webhook messages, stored durably until delivered.

pub mod auth;
pub mod commands;
pub mod config;
pub mod context;
pub mod delivery;
pub mod destinations;
pub mod event;
pub mod metrics;
pub mod routing;
pub mod runtime;
pub mod samples;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod text;
