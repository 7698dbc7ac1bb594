//! Test helpers for distributed-leasing providers.
//!
//! [`conformance`] holds the suite every provider passes: one public async function per
//! guarantee of the provider contract, each taking a [`conformance::Subject`]. A provider
//! crate runs them against its real server:
//!
//! ```no_run
//! # async fn f(p: std::sync::Arc<dyn leasing_abstractions::LeaseProvider>, q: std::sync::Arc<dyn leasing_abstractions::LeaseProvider>) {
//! use leasing_testkit::conformance::{run_all, Subject};
//! run_all(&Subject::new(p, q)).await;
//! # }
//! ```
//!
//! Each check panics with a message naming the guarantee it found broken, like an
//! assertion in a test.

pub mod checker;
pub mod conformance;
pub mod fenced;
pub mod history;
pub mod proxy;
pub mod recipes;
pub mod services;
