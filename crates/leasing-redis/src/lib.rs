#![doc = include_str!("../README.md")]

pub mod config;
mod error;
mod node;
mod provider;
mod redlock;
mod releases;

pub use config::{AccessToken, RedisConfig, RedisLeaseProviderBuilder, TokenCredential};
pub use provider::{RedisLeaseProvider, MAX_DURATION, MIN_DURATION};
pub use redlock::{RedlockLeaseProvider, RedlockLeaseProviderBuilder, URLS_ENV};
