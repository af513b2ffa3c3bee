//! The rig chaos tool's IO-free parts: the recorded history of what clients saw, and the
//! checker over it (the `rig-chaos` binary drives the rig and records; `loci-chaos` is the
//! in-process variant).

pub mod checker;
pub mod history;
