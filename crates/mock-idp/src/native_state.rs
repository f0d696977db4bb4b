//! What the native API remembers: the user pool's users, the refresh
//! tokens and challenge sessions it issued, and its request counters.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::grants::random_token;

/// Where a user stands, as Cognito's `UserStatus` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserStatus {
    /// Signs in with its password.
    Confirmed,
    /// Created by an administrator with a temporary password: its first
    /// sign-in is answered with the `NEW_PASSWORD_REQUIRED` challenge.
    ForceChangePassword,
}

/// One user of the mock user pool. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The user name (`USERNAME`).
    pub username: String,
    /// The password.
    pub password: String,
    /// Whether it must change its password first.
    pub status: UserStatus,
}

impl UserRecord {
    /// A user from its parts.
    #[must_use]
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
        status: UserStatus,
    ) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            status,
        }
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("status", &self.status)
            .finish()
    }
}

/// The built-in demo users:
///
/// | user | password | status |
/// | --- | --- | --- |
/// | `demo-user` | `demo-password` | confirmed |
/// | `new-user` | `temp-password` | must change its password |
#[must_use]
pub fn demo_users() -> Vec<UserRecord> {
    vec![
        UserRecord::new("demo-user", "demo-password", UserStatus::Confirmed),
        UserRecord::new("new-user", "temp-password", UserStatus::ForceChangePassword),
    ]
}

/// A refresh token's or a session's holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder {
    pub(crate) username: String,
    pub(crate) client_id: String,
}

/// The native API's counters, by operation and by user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NativeStats {
    /// Requests by operation (`InitiateAuth`, …), whatever their outcome.
    pub by_operation: BTreeMap<String, u64>,
    /// `InitiateAuth` and `RespondToAuthChallenge` requests by the user
    /// they name (`USERNAME`, or the holder of the refresh token).
    pub by_user: BTreeMap<String, u64>,
    /// Tokens issued (`AuthenticationResult`s and
    /// `ClientAuthenticationResult`s).
    pub tokens_issued: u64,
}

/// The native API's state.
#[derive(Default)]
pub(crate) struct NativeState {
    users: Mutex<HashMap<String, UserRecord>>,
    refresh_tokens: Mutex<HashMap<String, Holder>>,
    sessions: Mutex<HashMap<String, Holder>>,
    stats: Mutex<NativeStats>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps, valid even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NativeState {
    /// A pool holding `users`.
    pub(crate) fn with_users(users: Vec<UserRecord>) -> Self {
        let state = Self::default();
        for user in users {
            state.put_user(user);
        }
        state
    }

    pub(crate) fn put_user(&self, user: UserRecord) {
        lock(&self.users).insert(user.username.clone(), user);
    }

    pub(crate) fn user(&self, username: &str) -> Option<UserRecord> {
        lock(&self.users).get(username).cloned()
    }

    pub(crate) fn issue_refresh_token(&self, holder: Holder) -> String {
        let token = random_token(32);
        lock(&self.refresh_tokens).insert(token.clone(), holder);
        token
    }

    pub(crate) fn refresh_holder(&self, token: &str) -> Option<Holder> {
        lock(&self.refresh_tokens).get(token).cloned()
    }

    pub(crate) fn open_session(&self, holder: Holder) -> String {
        let session = random_token(48);
        lock(&self.sessions).insert(session.clone(), holder);
        session
    }

    /// The holder of `session`, which is spent: a session is single-use.
    pub(crate) fn take_session(&self, session: &str) -> Option<Holder> {
        lock(&self.sessions).remove(session)
    }

    pub(crate) fn record(&self, operation: &str, user: Option<&str>) {
        let mut stats = lock(&self.stats);
        *stats.by_operation.entry(operation.to_owned()).or_default() += 1;
        if let Some(user) = user {
            *stats.by_user.entry(user.to_owned()).or_default() += 1;
        }
    }

    /// Counts an answer that carries tokens.
    pub(crate) fn record_issued_if(&self, answer: &serde_json::Value) {
        if answer.get("AuthenticationResult").is_some()
            || answer.get("ClientAuthenticationResult").is_some()
        {
            lock(&self.stats).tokens_issued += 1;
        }
    }

    pub(crate) fn stats(&self) -> NativeStats {
        lock(&self.stats).clone()
    }

    pub(crate) fn reset_stats(&self) {
        *lock(&self.stats) = NativeStats::default();
    }
}
