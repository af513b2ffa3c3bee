//! `/v1/memory/*` and `/v1/memories/*`: store, get, update, forget, recall, search, batches.
//! Split by concern: `store.rs` (store and batch store), `edit.rs` (get, update, importance,
//! forget), `recall.rs` (recall, search, batch recall); the request's target here.

mod edit;
mod formats;
mod recall;
mod store;
pub mod transfer;

pub use edit::*;
pub use recall::*;
pub use store::*;

use std::collections::BTreeMap;

use serde_json::Value;

pub use loci_service::memories::{Target, agent_of, target};

/// Fields the request named that Loci does not know (reported as `warnings`, never an error).
fn unknown_warnings(extra: &BTreeMap<String, Value>) -> Option<Vec<String>> {
    if extra.is_empty() { None } else { Some(extra.keys().map(|k| format!("unknown field '{k}' ignored")).collect()) }
}
