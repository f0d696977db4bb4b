//! Authorization codes and refresh tokens the mock IdP has handed out.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use tokencache_core::UnixMillis;

/// How long an authorization code may be redeemed: five minutes, as
/// Cognito's.
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(300);

/// What an authorization code was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeGrant {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) issued_at: UnixMillis,
}

impl CodeGrant {
    fn expired(&self, now: UnixMillis) -> bool {
        now >= self.issued_at.plus(CODE_LIFETIME)
    }
}

/// What a refresh token was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefreshGrant {
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
}

/// The outstanding codes and refresh tokens.
///
/// Refresh tokens never expire here (Cognito's last 30 days by default,
/// longer than any test). Codes are pruned when new ones are issued.
#[derive(Debug, Default)]
pub(crate) struct GrantStore {
    codes: Mutex<HashMap<String, CodeGrant>>,
    refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
}

impl GrantStore {
    /// Stores `grant` under a new random code and returns the code.
    pub(crate) fn issue_code(&self, grant: CodeGrant) -> String {
        let code = random_token(16);
        let now = grant.issued_at;
        let mut codes = self.codes.lock().unwrap_or_else(PoisonError::into_inner);
        codes.retain(|_, existing| !existing.expired(now));
        codes.insert(code.clone(), grant);
        code
    }

    /// Takes the grant of `code` out of the store: a code is single-use, and
    /// any presentation of it uses it up. `None` if the code is unknown, used
    /// or expired at `now`.
    pub(crate) fn redeem_code(&self, code: &str, now: UnixMillis) -> Option<CodeGrant> {
        let grant = self
            .codes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(code)?;
        (!grant.expired(now)).then_some(grant)
    }

    /// Stores `grant` under a new random refresh token and returns the token.
    pub(crate) fn issue_refresh_token(&self, grant: RefreshGrant) -> String {
        let token = random_token(32);
        self.refresh_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), grant);
        token
    }

    /// The grant of refresh token `token`, if it was issued here.
    pub(crate) fn refresh_grant(&self, token: &str) -> Option<RefreshGrant> {
        self.refresh_tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }
}

/// `bytes` random bytes from a CSPRNG, base64url without padding.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    URL_SAFE_NO_PAD.encode(buffer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn grant(at: u64) -> CodeGrant {
        CodeGrant {
            client_id: "demo-client".to_owned(),
            redirect_uri: "https://app.example/cb".to_owned(),
            scopes: vec!["api/read".to_owned()],
            issued_at: UnixMillis(at),
        }
    }

    #[test]
    fn codes_are_single_use() {
        let store = GrantStore::default();
        let code = store.issue_code(grant(1_000));
        assert_eq!(
            store.redeem_code(&code, UnixMillis(2_000)),
            Some(grant(1_000))
        );
        assert_eq!(store.redeem_code(&code, UnixMillis(2_000)), None);
        assert_eq!(store.redeem_code("unknown", UnixMillis(2_000)), None);
    }

    #[test]
    fn codes_expire_after_five_minutes() {
        let store = GrantStore::default();
        let code = store.issue_code(grant(0));
        assert_eq!(store.redeem_code(&code, UnixMillis(300_000)), None);
        let fresh = store.issue_code(grant(0));
        assert!(store.redeem_code(&fresh, UnixMillis(299_999)).is_some());
    }

    #[test]
    fn issuing_prunes_expired_codes() {
        let store = GrantStore::default();
        store.issue_code(grant(0));
        store.issue_code(grant(1_000_000));
        assert_eq!(store.codes.lock().unwrap().len(), 1);
    }

    #[test]
    fn refresh_tokens_are_reusable() {
        let store = GrantStore::default();
        let grant = RefreshGrant {
            client_id: "a".to_owned(),
            scopes: vec![],
        };
        let token = store.issue_refresh_token(grant.clone());
        assert_eq!(store.refresh_grant(&token), Some(grant.clone()));
        assert_eq!(store.refresh_grant(&token), Some(grant));
        assert_eq!(store.refresh_grant("nope"), None);
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_token(16);
        assert_eq!(a.len(), 22);
        assert_ne!(a, random_token(16));
    }
}
