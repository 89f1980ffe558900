//! taskform: GitOps for Huawei Cloud DataArts Catalog metadata collection tasks.
//!
//! The source is laid out by pipeline stage, and data flows one way:
//!
//! files → [`load`] (manifests) → [`plan`] (pure: the planner and the plan document)
//! → [`reconcile`] (observe the server, approve, send, record) → [`render`] → [`cli`].
//!
//! [`state`] (the state, its journal and lock behind `StateStore`) is read by the
//! planner and written by reconcile; [`remote`] (the API client behind `TaskApi`) is
//! used by reconcile alone. [`alert`] sends what happened to the chat tools and
//! webhooks of `notify:` (beside the commands: it observes reconciles). [`error`] gathers the stages' errors for the CLI. The
//! small modules at the top are used by every stage. [`emulator`] is an independent
//! model of the service. `tests/it/layering.rs` keeps these arrows true.

pub mod alert;
pub mod cli;
pub mod clock;
pub mod emulator;
pub mod endpoint;
pub mod error;
pub mod fsutil;
pub mod glob;
pub mod hash;
pub mod load;
pub mod location;
pub mod plan;
pub mod reconcile;
pub mod remote;
pub mod render;
pub mod signals;
pub mod state;
