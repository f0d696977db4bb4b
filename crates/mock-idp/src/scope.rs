//! Deciding which scopes a request is granted.

use crate::response::OAuthError;

/// The scopes granted for `requested` (a space-separated `scope` parameter)
/// to a client that may have `allowed`.
///
/// Absent (or blank) → all of `allowed`, as Cognito grants for
/// `client_credentials`. Otherwise the requested scopes in the order given,
/// duplicates dropped; any one outside `allowed` refuses the request with
/// `invalid_scope`.
pub(crate) fn grant_scopes(
    requested: Option<&str>,
    allowed: &[String],
) -> Result<Vec<String>, OAuthError> {
    let mut granted: Vec<String> = Vec::new();
    for scope in requested
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !allowed.iter().any(|a| a == scope) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {scope} is not allowed for this client"
            )));
        }
        if !granted.iter().any(|g| g == scope) {
            granted.push(scope.to_owned());
        }
    }
    if granted.is_empty() {
        return Ok(allowed.to_vec());
    }
    Ok(granted)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["api/read".to_owned(), "api/write".to_owned()]
    }

    #[test]
    fn absent_means_all() {
        assert_eq!(grant_scopes(None, &allowed()).unwrap(), allowed());
        assert_eq!(grant_scopes(Some("  "), &allowed()).unwrap(), allowed());
    }

    #[test]
    fn keeps_order_and_drops_duplicates() {
        assert_eq!(
            grant_scopes(Some("api/write  api/read api/write"), &allowed()).unwrap(),
            ["api/write", "api/read"]
        );
    }

    #[test]
    fn refuses_scopes_not_allowed() {
        let err = grant_scopes(Some("api/read api/admin"), &allowed()).unwrap_err();
        assert_eq!(err.error, "invalid_scope");
    }
}
