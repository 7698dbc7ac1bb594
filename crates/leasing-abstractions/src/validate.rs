//! Checks every provider runs before it writes anything.

use crate::contract::{AcquireRequest, ProviderCapabilities};
use crate::error::Result;
use crate::metadata::validate_metadata;
use crate::name::validate_name;

/// Validates an acquisition against the name and metadata rules and the provider's
/// duration bounds. Providers call it first in `try_acquire`; the manager calls it before
/// its first attempt.
///
/// # Errors
/// `InvalidArgument` naming the field (`name`, `metadata`, `lease_duration`) and the rule.
pub fn validate_request(
    request: &AcquireRequest,
    capabilities: &ProviderCapabilities,
) -> Result<()> {
    validate_name(&request.name)?;
    validate_metadata(&request.metadata)?;
    capabilities.check_duration(request.duration)
}
