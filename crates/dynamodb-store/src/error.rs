//! Turning SDK failures into [`StoreError`]s that say what an operator needs
//! and nothing secret.
//!
//! The SDK's error types stay here: callers see only [`StoreError`].

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tokencache_core::StoreError;

/// Service error codes that mean "slow down or try later", not "wrong".
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "LimitExceededException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSInternalException",
    "DependencyTimeoutException",
    "TransactionConflictException",
];

/// Service error codes that mean the configuration or the permissions are
/// wrong: retrying will not help.
const REFUSED_CODES: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "IncompleteSignature",
    "ExpiredTokenException",
    "ResourceNotFoundException",
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "InvalidKeyUsageException",
    "IncorrectKeyException",
    "InvalidCiphertextException",
    "KeyUnavailableException",
];

/// A [`StoreError`] for a failed call of `operation` (`"GetItem"`, …).
///
/// Service messages are kept: DynamoDB and KMS name codes, tables and key
/// ARNs in them, never item values (which are sealed anyway) or key
/// material.
pub(crate) fn from_sdk<E, R>(operation: &str, error: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::TimeoutError(_) => {
            StoreError::Unavailable(format!("{operation}: no answer in time"))
        }
        SdkError::DispatchFailure(failure) => {
            let why = if failure.is_timeout() {
                "no answer in time".to_owned()
            } else {
                // Connection refused, DNS, TLS, or no credentials found:
                // the context names which, without secrets.
                DisplayErrorContext(error).to_string()
            };
            StoreError::Unavailable(format!("{operation}: {why}"))
        }
        SdkError::ConstructionFailure(_) => StoreError::Refused(format!(
            "{operation}: request not built: {}",
            DisplayErrorContext(error)
        )),
        SdkError::ResponseError(_) => StoreError::Protocol(format!(
            "{operation}: unreadable response: {}",
            DisplayErrorContext(error)
        )),
        SdkError::ServiceError(service) => {
            let service = service.err();
            from_service(operation, service.code(), service.message())
        }
        // SdkError is non-exhaustive.
        _ => StoreError::Protocol(format!("{operation}: {}", DisplayErrorContext(error))),
    }
}

/// A [`StoreError`] for an error response with `code` and `message`.
pub(crate) fn from_service(
    operation: &str,
    code: Option<&str>,
    message: Option<&str>,
) -> StoreError {
    let code_text = code.unwrap_or("unknown error");
    let text = match message {
        Some(message) if !message.is_empty() => {
            format!("{operation}: {code_text}: {}", truncate(message, 240))
        }
        _ => format!("{operation}: {code_text}"),
    };
    match code {
        Some(code) if TRANSIENT_CODES.contains(&code) => StoreError::Unavailable(text),
        Some(code) if REFUSED_CODES.contains(&code) => StoreError::Refused(text),
        _ => StoreError::Protocol(text),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_are_transient() {
        let error = from_service(
            "PutItem",
            Some("ProvisionedThroughputExceededException"),
            Some("slow down"),
        );
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "store unavailable: PutItem: ProvisionedThroughputExceededException: slow down"
        );
    }

    #[test]
    fn permissions_and_missing_tables_are_refusals() {
        for code in ["AccessDeniedException", "ResourceNotFoundException"] {
            let error = from_service("GetItem", Some(code), None);
            assert!(matches!(error, StoreError::Refused(_)), "{error:?}");
        }
    }

    #[test]
    fn anything_else_is_a_protocol_error() {
        let error = from_service(
            "GetItem",
            Some("ValidationException"),
            Some(&"x".repeat(1000)),
        );
        assert!(matches!(error, StoreError::Protocol(_)), "{error:?}");
        assert!(error.to_string().len() < 320);
        let error = from_service("GetItem", None, None);
        assert!(error.to_string().ends_with("GetItem: unknown error"));
    }
}
