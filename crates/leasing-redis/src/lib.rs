#![doc = include_str!("../README.md")]

mod builder;
mod config;
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
mod watcher;

pub use builder::RedisLeaseProviderBuilder;
pub use config::{
    RedisConfig, CLUSTER_URLS_ENV, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FENCE_RETENTION, DEFAULT_KEY_PREFIX, DEFAULT_REFRESH_BEFORE_EXPIRY, DEFAULT_URL,
    MAX_OPTION_DURATION, RESTART_FENCE_ENV, URL_ENV,
};
pub use credential::{AccessToken, TokenCredential};
pub use fenced::RedisFencedResource;
pub use provider::{RedisLeaseProvider, MAX_DURATION, MIN_DURATION};
pub use redlock::{RedlockLeaseProvider, RedlockLeaseProviderBuilder, URLS_ENV};
