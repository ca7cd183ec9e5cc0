//! The blackbox storage-provider: a crash-safe share store and the request logic over it.
//!
//! [`StorageServer`] holds the logic (allocation, quota, verification of every block and of the
//! share root at commit) and is callable without libp2p; [`daemon`] runs it on the network.

pub mod billing;
pub mod config;
pub mod daemon;
pub mod dashboard;
mod disk;
pub mod earnings;
pub mod egress;
mod error;
pub mod history;
pub mod jobs;
pub mod keys;
mod memory;
pub mod power;
mod server;
pub mod setup;
mod store;
pub mod withdraw;

pub use config::NodeConfig;
pub use disk::DiskStore;
pub use error::NodeError;
pub use memory::MemoryStore;
#[cfg(feature = "faults")]
pub use server::Faults;
pub use server::{Activity, LeasePolicy, StorageServer};
pub use store::{ShareKey, ShareMeta, ShareStore, StoreError};
