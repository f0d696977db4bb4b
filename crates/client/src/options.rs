//! Settings for one token call: renew now, or ask for other scopes or
//! another resource than the source's own.

/// Per-call settings for [`TokenSource::token_with`] and
/// [`ClientCredentials::token_with`]. The default asks for the source's
/// usual token.
///
/// The HTTP layers read them from the request's extensions, so one request
/// can ask for its own: `reqwest_middleware::RequestBuilder::with_extension`
/// for `BearerMiddleware`, `http::Request::extensions_mut` for
/// `BearerLayer`.
///
/// A [`ClientCredentials`] source keeps one cached token per set of scopes
/// and resource asked for, each refreshed ahead like the default one, and
/// drops those that expire; keep the sets few.
///
/// ```
/// use tokencache_client::TokenOptions;
///
/// let options = TokenOptions::new()
///     .scopes(["orders/write"])
///     .resource("https://orders.example");
/// assert_eq!(options.scopes.as_deref(), Some(&["orders/write".to_owned()][..]));
/// assert!(!options.force_refresh);
/// ```
///
/// [`TokenSource::token_with`]: crate::TokenSource::token_with
/// [`ClientCredentials::token_with`]: crate::ClientCredentials::token_with
/// [`ClientCredentials`]: crate::ClientCredentials
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenOptions {
    /// Fetch a new token even if the cached one is still good (one fetch
    /// already in progress is joined, not doubled).
    pub force_refresh: bool,
    /// Ask for these scopes instead of the source's (`None`: the source's).
    /// An empty list sends no `scope` parameter: the endpoint grants the
    /// client's defaults.
    pub scopes: Option<Vec<String>>,
    /// Ask for a token for this resource (RFC 8707's `resource`
    /// parameter), instead of the source's own `resource` parameter if it
    /// has one.
    pub resource: Option<String>,
}

impl TokenOptions {
    /// The source's usual token.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Fetches a new token even if the cached one is still good.
    #[must_use]
    pub fn force_refresh(mut self) -> Self {
        self.force_refresh = true;
        self
    }

    /// Asks for these scopes instead of the source's.
    #[must_use]
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Asks for a token for this resource (RFC 8707).
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }
}

/// Which token a call asks for: the source's own (the default), or one for
/// other scopes or another resource. A source caches one token per variant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Variant {
    /// Sorted and without repeats: the order of scopes changes no token.
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) resource: Option<String>,
}

impl Variant {
    pub(crate) fn of(options: &TokenOptions) -> Self {
        let scopes = options.scopes.as_ref().map(|scopes| {
            let mut scopes = scopes.clone();
            scopes.sort_unstable();
            scopes.dedup();
            scopes
        });
        Self {
            scopes,
            resource: options.resource.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_order_and_repeats_do_not_make_another_variant() {
        let a = Variant::of(&TokenOptions::new().scopes(["b", "a", "b"]));
        let b = Variant::of(&TokenOptions::new().scopes(["a", "b"]));
        assert_eq!(a, b);
        assert_ne!(a, Variant::default());
        assert_ne!(
            Variant::of(&TokenOptions::new().scopes(Vec::<String>::new())),
            Variant::default(),
            "no scope at all is not the source's scopes"
        );
        assert_eq!(
            Variant::of(&TokenOptions::new().force_refresh()),
            Variant::default(),
            "forcing a refresh asks for the same token"
        );
    }
}
