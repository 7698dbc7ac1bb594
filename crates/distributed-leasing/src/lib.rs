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
