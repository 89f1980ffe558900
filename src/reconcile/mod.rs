//! Stage 3: making the server match the plan.

pub mod applier;
pub mod events;
pub mod observe;
