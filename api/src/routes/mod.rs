pub mod cluster;
pub mod keys;
pub mod memory;
pub mod meta;
pub mod namespaces;
pub mod quotas;
pub mod sessions;
pub mod vectors;
