//! Reading the server into the state before planning.

pub mod adopt;
pub mod refresh;
pub mod settle;
