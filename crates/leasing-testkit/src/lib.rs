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
//!
//! [`services`] finds the shared servers the tests use (with a SKIPPED line, or a failure
//! under `LEASING_REQUIRE_SERVICES=1`, when one is not set up) and starts private ones a
//! test may stop and restart: redis-server, Azurite, the Cosmos emulator. [`proxy`] puts a
//! fault-injecting TCP proxy in front of any of them.

pub mod checker;
pub mod conformance;
pub mod errors;
pub mod fenced;
pub mod history;
pub mod logs;
pub mod proxy;
pub mod recipes;
pub mod services;
