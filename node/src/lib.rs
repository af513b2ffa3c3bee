//! The `loci` binary's library: configuration, node start-up/shut-down and the operator CLI.

pub mod backup_cli;
pub mod cli;
pub mod config;
pub mod jwt;
pub mod logging;
pub mod model;
pub mod probe;
pub mod server;
pub mod tls;
pub mod webhooks;

pub use config::ServeArgs;
pub use server::{NodeHandle, start};
