//! Redis client errors as store errors.

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};
use tokencache_core::StoreError;

/// Sorts a Redis error into the store contract's three kinds, so the proxy
/// can tell an outage (degrade, retry later) from a refusal (fix the
/// configuration) from nonsense on the wire.
///
/// The message is the client's description of the failure, which names no
/// password; `scrub` is removed from it all the same (the password, when
/// there is one), so no future client version can leak it through here.
pub(crate) fn store_error(op: &str, error: &RedisError, scrub: Option<&str>) -> StoreError {
    let mut message = format!("redis {op}: {error}");
    if let Some(secret) = scrub.filter(|secret| !secret.is_empty()) {
        message = message.replace(secret, "[redacted]");
    }
    match classify(error) {
        Class::Unavailable => StoreError::Unavailable(message),
        Class::Refused => StoreError::Refused(message),
        Class::Protocol => StoreError::Protocol(message),
    }
}

/// An operation that did not finish within `limit`.
pub(crate) fn timed_out(op: &str, limit: Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "redis {op}: no answer within {} ms",
        limit.as_millis()
    ))
}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Unavailable,
    Refused,
    Protocol,
}

fn classify(error: &RedisError) -> Class {
    // Server errors the client does not name (WRONGPASS, NOAUTH) only have
    // their code.
    if matches!(error.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM")) {
        return Class::Refused;
    }
    match error.kind() {
        ErrorKind::AuthenticationFailed
        | ErrorKind::InvalidClientConfig
        | ErrorKind::Server(ServerErrorKind::NoPerm) => Class::Refused,
        ErrorKind::Io
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::Server(
            ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => Class::Unavailable,
        _ if error.is_timeout() || error.is_connection_dropped() => Class::Unavailable,
        _ => Class::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_sorted() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(classify(&io), Class::Unavailable);
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "bad"));
        assert_eq!(classify(&auth), Class::Refused);
        let parse = RedisError::from((ErrorKind::UnexpectedReturnType, "odd"));
        assert_eq!(classify(&parse), Class::Protocol);
    }

    #[test]
    fn the_secret_is_scrubbed() {
        let error = RedisError::from((
            ErrorKind::InvalidClientConfig,
            "bad",
            "password hunter2 rejected".to_owned(),
        ));
        let message = store_error("get", &error, Some("hunter2")).to_string();
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("[redacted]"), "{message}");
        assert!(matches!(
            store_error("get", &error, None),
            StoreError::Refused(_)
        ));
    }

    #[test]
    fn timeouts_are_unavailability() {
        let error = timed_out("put", Duration::from_millis(250));
        assert!(matches!(&error, StoreError::Unavailable(m) if m.contains("250 ms")));
    }
}
