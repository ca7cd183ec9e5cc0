//! The blackbox storage-provider: a crash-safe share store and the request logic over it.
//!
//! [`StorageServer`] holds the logic (allocation, quota, verification of every block and of the
//! share root at commit) and is callable without libp2p; [`daemon`] runs it on the network.

pub mod billing;
pub mod config;
pub mod daemon;
mod disk;
mod memory;
mod server;
mod store;

pub use config::NodeConfig;
pub use disk::DiskStore;
pub use memory::MemoryStore;
pub use server::{Faults, LeasePolicy, StorageServer};
pub use store::{ShareKey, ShareMeta, ShareStore, StoreError};
