//! The REST front's layers, inner to outer: per-key rate limit, authentication, audit and usage,
//! metrics, request ids. Each holds only its axum layer; what it decides with lives in the
//! service crate.

pub mod audit;
pub mod auth;
pub mod metrics;
pub mod ratelimit;
pub mod request_id;
