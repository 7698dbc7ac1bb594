#![doc = include_str!("../README.md")]

pub mod config;
mod connection;
mod credential;
mod error;
mod fenced;
mod ghost;
mod identity;
mod listing;
mod node;
mod provider;
mod record;
mod redlock;
mod releases;
mod scripts;
mod subscriber;

pub use config::{AccessToken, RedisConfig, RedisLeaseProviderBuilder, TokenCredential};
pub use fenced::RedisFencedResource;
pub use provider::{RedisLeaseProvider, MAX_DURATION, MIN_DURATION};
pub use redlock::{RedlockLeaseProvider, RedlockLeaseProviderBuilder, URLS_ENV};
