//! taskform: GitOps for Huawei Cloud DataArts Catalog metadata collection tasks.

pub mod cli;
pub mod clock;
pub mod emulator;
pub mod endpoint;
pub mod error;
pub mod fsutil;
pub mod hash;
pub mod load;
pub mod plan;
pub mod reconcile;
pub mod remote;
pub mod render;
pub mod signals;
pub mod state;
