//! What a route's upstream answers look like: OAuth 2.0 token answers, or
//! Cognito's native ones. The loader and the retry policy ask it whether a
//! 200 holds a token to cache, and whether it is an answer at all.

use tokencache_core::cognito::{NativeAnswerOptions, is_not_a_native_answer};
use tokencache_core::{CachedToken, FreshnessPolicy, Uncacheable, UnixMillis};

/// The format of a route's 200 answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerFormat {
    /// `{"access_token","expires_in",…}`.
    OAuth,
    /// `{"AuthenticationResult":{…,"ExpiresIn"}}` and the like.
    CognitoNative(NativeAnswerOptions),
}

impl AnswerFormat {
    /// The cache entry of a 200 answer's body, fetched at `now`.
    pub(crate) fn entry(
        self,
        body: &[u8],
        now: UnixMillis,
        policy: &FreshnessPolicy,
    ) -> Result<CachedToken, Uncacheable> {
        match self {
            Self::OAuth => CachedToken::from_response(body, now, policy),
            Self::CognitoNative(options) => {
                CachedToken::from_native_response(body, now, policy, options)
            }
        }
    }

    /// Whether a 200 body is no answer at all (worth retrying), as opposed
    /// to a token or another answer to pass on (a Cognito challenge).
    pub(crate) fn is_not_a_token(self, body: &[u8], policy: &FreshnessPolicy) -> bool {
        match self {
            // Any instant will do: only the body's shape matters here.
            Self::OAuth => matches!(
                CachedToken::from_response(body, UnixMillis(0), policy),
                Err(Uncacheable::NotJsonObject | Uncacheable::MissingAccessToken)
            ),
            Self::CognitoNative(_) => is_not_a_native_answer(body),
        }
    }
}
