#![doc = include_str!("../../../README.md")]

pub use leasing_abstractions::*;

/// The Redis and Redlock providers (feature `redis`).
#[cfg(feature = "redis")]
#[doc(inline)]
pub use leasing_redis as redis;

/// The Azure Blob Storage provider (feature `blob`).
#[cfg(feature = "blob")]
#[doc(inline)]
pub use leasing_blob as blob;

/// The Azure Cosmos DB provider (feature `cosmos`).
#[cfg(feature = "cosmos")]
#[doc(inline)]
pub use leasing_cosmos as cosmos;

/// The snippets of `docs/recipes.md`, compiled as doc tests so that they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/recipes.md")]
pub struct RecipesDoc;

/// The snippets of `docs/providers/redis.md`, compiled as doc tests.
#[cfg(all(doctest, feature = "redis"))]
#[doc = include_str!("../../../docs/providers/redis.md")]
pub struct RedisProviderDoc;

/// The snippets of `docs/providers/blob.md`, compiled as doc tests.
#[cfg(all(doctest, feature = "blob"))]
#[doc = include_str!("../../../docs/providers/blob.md")]
pub struct BlobProviderDoc;

/// The snippets of `docs/providers/cosmos.md`, compiled as doc tests.
#[cfg(all(doctest, feature = "cosmos"))]
#[doc = include_str!("../../../docs/providers/cosmos.md")]
pub struct CosmosProviderDoc;
