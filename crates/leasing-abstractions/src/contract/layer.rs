//! Forwarding: `Arc<P>` and `Box<P>` are providers, and a wrapper overrides one method
//! and forwards the rest ([`ProviderLayer`] with [`provider_layer!`](crate::provider_layer)).

use super::*;

/// Forwards every method, so `Arc<P>` and `Box<P>` (and `Arc<dyn LeaseProvider>`) are
/// providers too. `missing_trait_methods` is denied here: a method added to the trait
/// and not forwarded would silently fall back to its default (a wrapper that drops
/// `release_notifications` makes every waiter poll).
macro_rules! forward_provider {
    ($($ptr:ident),*) => {$(
        #[deny(clippy::missing_trait_methods)]
        impl<P: LeaseProvider + ?Sized> LeaseProvider for $ptr<P> {
            fn provider_name(&self) -> &'static str {
                (**self).provider_name()
            }
            fn capabilities(&self) -> ProviderCapabilities {
                (**self).capabilities()
            }
            fn try_acquire<'a>(
                &'a self,
                request: &'a AcquireRequest,
            ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
                (**self).try_acquire(request)
            }
            fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
                (**self).renew(grant)
            }
            fn renew_many<'a>(
                &'a self,
                grants: &'a [Arc<LeaseGrant>],
            ) -> BoxFuture<'a, Vec<Result<()>>> {
                (**self).renew_many(grants)
            }
            fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
                (**self).release(grant)
            }
            fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
                (**self).inspect(name)
            }
            fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
                (**self).break_lease(name)
            }
            fn release_notifications(&self, name: &str) -> Option<broadcast::Receiver<String>> {
                (**self).release_notifications(name)
            }
            fn renew_now_signals(&self) -> Option<broadcast::Receiver<()>> {
                (**self).renew_now_signals()
            }
            fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
                (**self).list(request)
            }
        }
    )*};
}

forward_provider!(Arc, Box);

/// A provider that wraps another and changes some of its behaviour: implement
/// [`inner`](Self::inner) and override only the methods that differ; every other method
/// forwards to the inner provider. Then [`provider_layer!`](crate::provider_layer) makes
/// the wrapper a [`LeaseProvider`] (opendal's layers work this way).
///
/// The forwarding is checked: the generated impl denies `clippy::missing_trait_methods`,
/// and every method of [`LeaseProvider`] has a forwarding default here, so a method added
/// to the trait cannot be dropped by a wrapper.
///
/// ```
/// use leasing_abstractions::provider::ProviderLayer;
/// use leasing_abstractions::{BoxFuture, InMemoryLeaseProvider, LeaseError, LeaseGrant, LeaseProvider, Result};
/// #[derive(Debug)]
/// struct NoRenewals(InMemoryLeaseProvider);
/// impl ProviderLayer for NoRenewals {
///     fn inner(&self) -> &dyn LeaseProvider { &self.0 }
///     fn renew<'a>(&'a self, _: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
///         Box::pin(async { Err(LeaseError::unavailable("renewals refused")) })
///     }
/// }
/// leasing_abstractions::provider_layer!(NoRenewals);
/// let p: std::sync::Arc<dyn LeaseProvider> = std::sync::Arc::new(NoRenewals(InMemoryLeaseProvider::new()));
/// assert_eq!(p.provider_name(), "in-memory");
/// ```
pub trait ProviderLayer: Send + Sync + Debug + 'static {
    /// The wrapped provider.
    fn inner(&self) -> &dyn LeaseProvider;

    /// See [`LeaseProvider::provider_name`].
    fn provider_name(&self) -> &'static str {
        self.inner().provider_name()
    }
    /// See [`LeaseProvider::capabilities`].
    fn capabilities(&self) -> ProviderCapabilities {
        self.inner().capabilities()
    }
    /// See [`LeaseProvider::try_acquire`].
    fn try_acquire<'a>(
        &'a self,
        request: &'a AcquireRequest,
    ) -> BoxFuture<'a, Result<Option<LeaseGrant>>> {
        self.inner().try_acquire(request)
    }
    /// See [`LeaseProvider::renew`].
    fn renew<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        self.inner().renew(grant)
    }
    /// See [`LeaseProvider::renew_many`].
    fn renew_many<'a>(&'a self, grants: &'a [Arc<LeaseGrant>]) -> BoxFuture<'a, Vec<Result<()>>> {
        self.inner().renew_many(grants)
    }
    /// See [`LeaseProvider::release`].
    fn release<'a>(&'a self, grant: &'a LeaseGrant) -> BoxFuture<'a, Result<()>> {
        self.inner().release(grant)
    }
    /// See [`LeaseProvider::inspect`].
    fn inspect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<LeaseInfo>>> {
        self.inner().inspect(name)
    }
    /// See [`LeaseProvider::break_lease`].
    fn break_lease<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.inner().break_lease(name)
    }
    /// See [`LeaseProvider::release_notifications`].
    fn release_notifications(&self, name: &str) -> Option<broadcast::Receiver<String>> {
        self.inner().release_notifications(name)
    }

    /// See [`LeaseProvider::renew_now_signals`].
    fn renew_now_signals(&self) -> Option<broadcast::Receiver<()>> {
        self.inner().renew_now_signals()
    }
    /// See [`LeaseProvider::list`].
    fn list<'a>(&'a self, request: &'a ListRequest) -> BoxFuture<'a, Result<LeasePage>> {
        self.inner().list(request)
    }
}

/// Implements [`LeaseProvider`] for a type that implements [`ProviderLayer`], forwarding
/// every method to the layer (which forwards what it does not override to its inner
/// provider). See [`ProviderLayer`].
#[macro_export]
macro_rules! provider_layer {
    ($ty:ty) => {
        #[deny(clippy::missing_trait_methods)]
        impl $crate::LeaseProvider for $ty {
            fn provider_name(&self) -> &'static str {
                $crate::provider::ProviderLayer::provider_name(self)
            }
            fn capabilities(&self) -> $crate::ProviderCapabilities {
                $crate::provider::ProviderLayer::capabilities(self)
            }
            fn try_acquire<'a>(
                &'a self,
                request: &'a $crate::AcquireRequest,
            ) -> $crate::BoxFuture<'a, $crate::Result<Option<$crate::LeaseGrant>>> {
                $crate::provider::ProviderLayer::try_acquire(self, request)
            }
            fn renew<'a>(
                &'a self,
                grant: &'a $crate::LeaseGrant,
            ) -> $crate::BoxFuture<'a, $crate::Result<()>> {
                $crate::provider::ProviderLayer::renew(self, grant)
            }
            fn renew_many<'a>(
                &'a self,
                grants: &'a [::std::sync::Arc<$crate::LeaseGrant>],
            ) -> $crate::BoxFuture<'a, Vec<$crate::Result<()>>> {
                $crate::provider::ProviderLayer::renew_many(self, grants)
            }
            fn release<'a>(
                &'a self,
                grant: &'a $crate::LeaseGrant,
            ) -> $crate::BoxFuture<'a, $crate::Result<()>> {
                $crate::provider::ProviderLayer::release(self, grant)
            }
            fn inspect<'a>(
                &'a self,
                name: &'a str,
            ) -> $crate::BoxFuture<'a, $crate::Result<Option<$crate::LeaseInfo>>> {
                $crate::provider::ProviderLayer::inspect(self, name)
            }
            fn break_lease<'a>(
                &'a self,
                name: &'a str,
            ) -> $crate::BoxFuture<'a, $crate::Result<bool>> {
                $crate::provider::ProviderLayer::break_lease(self, name)
            }
            fn release_notifications(
                &self,
                name: &str,
            ) -> Option<$crate::__private::broadcast::Receiver<String>> {
                $crate::provider::ProviderLayer::release_notifications(self, name)
            }
            fn renew_now_signals(&self) -> Option<$crate::__private::broadcast::Receiver<()>> {
                $crate::provider::ProviderLayer::renew_now_signals(self)
            }
            fn list<'a>(
                &'a self,
                request: &'a $crate::ListRequest,
            ) -> $crate::BoxFuture<'a, $crate::Result<$crate::LeasePage>> {
                $crate::provider::ProviderLayer::list(self, request)
            }
        }
    };
}
