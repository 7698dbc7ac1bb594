#![doc = include_str!("../README.md")]

pub mod connection_string;
pub mod credential;
mod fenced;
mod redact;

pub use connection_string::ConnectionString;
pub use credential::{credential_from_env, credential_kind, token_credential, CredentialKind};
pub use fenced::lost_round_pause;
pub use redact::{chain, redact};
