//! Start-up configuration: the registered clients and the initial settings.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::MockIdpError;

/// The issuer (`iss` claim) used when none is configured.
pub const DEFAULT_ISSUER: &str = "http://mock-idp.tokencache.local";

/// The access-token lifetime used when none is configured: one hour, as
/// Cognito's default.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// One registered app client: its id, its secret and the scopes it may be
/// granted.
///
/// `Debug` prints the secret as `[redacted]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRecord {
    /// The client id (`client_id`).
    pub id: String,
    /// The client secret. Mock secrets are test values, but they are kept out
    /// of `Debug` output all the same, so a log never learns the habit.
    pub secret: String,
    /// The scopes this client may ask for, such as `api/read`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl ClientRecord {
    /// A client record from its parts.
    #[must_use]
    pub fn new<S: Into<String>>(
        id: impl Into<String>,
        secret: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRecord")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The built-in demo clients:
///
/// | id | secret | scopes |
/// | --- | --- | --- |
/// | `demo-client` | `demo-secret` | `api/read`, `api/write` |
/// | `other-client` | `other-secret` | `api/read`, `api/write`, `api/admin` |
#[must_use]
pub fn demo_clients() -> Vec<ClientRecord> {
    vec![
        ClientRecord::new("demo-client", "demo-secret", ["api/read", "api/write"]),
        ClientRecord::new(
            "other-client",
            "other-secret",
            ["api/read", "api/write", "api/admin"],
        ),
    ]
}

/// How a mock IdP starts.
///
/// `latency` and `token_lifetime` are only the initial values: they can be
/// changed at run time through [`MockIdp::set_latency`],
/// [`MockIdp::set_token_lifetime`] or `POST /control`. Every fault starts
/// off; [`MockIdp::apply`] or `POST /control` turns them on.
///
/// `Debug` redacts client secrets.
///
/// [`MockIdp::set_latency`]: crate::MockIdp::set_latency
/// [`MockIdp::set_token_lifetime`]: crate::MockIdp::set_token_lifetime
/// [`MockIdp::apply`]: crate::MockIdp::apply
#[derive(Clone, Debug)]
pub struct MockIdpConfig {
    /// The registered clients. Ids must be unique; when one repeats, the
    /// last record wins.
    pub clients: Vec<ClientRecord>,
    /// The lifetime of issued access tokens (`expires_in`, and `exp - iat`),
    /// in whole seconds. Default one hour.
    pub token_lifetime: Duration,
    /// A delay added before every answer of `/oauth2/token`. Default none.
    pub latency: Duration,
    /// The `iss` claim of issued tokens. Default [`DEFAULT_ISSUER`].
    pub issuer: String,
}

impl Default for MockIdpConfig {
    /// The [`demo_clients`], one-hour tokens, no latency, [`DEFAULT_ISSUER`].
    fn default() -> Self {
        Self {
            clients: demo_clients(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            latency: Duration::ZERO,
            issuer: DEFAULT_ISSUER.to_owned(),
        }
    }
}

/// The shape of a clients file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default)]
    clients: Vec<ClientRecord>,
}

impl MockIdpConfig {
    /// Reads client records from a TOML file:
    ///
    /// ```toml
    /// [[clients]]
    /// id = "demo-client"
    /// secret = "demo-secret"
    /// scopes = ["api/read", "api/write"]
    /// ```
    ///
    /// # Errors
    ///
    /// [`MockIdpError::ReadClients`] if the file cannot be read,
    /// [`MockIdpError::ParseClients`] if it is not TOML of that shape, and
    /// [`MockIdpError::InvalidClients`] if a client id is empty or repeated,
    /// or a scope is empty or contains whitespace.
    pub fn load_clients_file(path: &Path) -> Result<Vec<ClientRecord>, MockIdpError> {
        let text = std::fs::read_to_string(path).map_err(|source| MockIdpError::ReadClients {
            path: path.to_owned(),
            source,
        })?;
        parse_clients(&text, path)
    }
}

/// Parses and checks the text of a clients file; `path` is only for errors.
fn parse_clients(text: &str, path: &Path) -> Result<Vec<ClientRecord>, MockIdpError> {
    let file: ClientsFile = toml::from_str(text).map_err(|err| MockIdpError::ParseClients {
        path: path.to_owned(),
        line: err
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1)),
        message: err.message().to_owned(),
    })?;
    let invalid = |reason: String| MockIdpError::InvalidClients {
        path: path.to_owned(),
        reason,
    };
    let mut seen = HashSet::new();
    for client in &file.clients {
        if client.id.is_empty() {
            return Err(invalid("a client has an empty id".to_owned()));
        }
        if !seen.insert(client.id.as_str()) {
            return Err(invalid(format!("client id {:?} appears twice", client.id)));
        }
        if let Some(scope) = client
            .scopes
            .iter()
            .find(|scope| scope.is_empty() || scope.contains(char::is_whitespace))
        {
            return Err(invalid(format!(
                "client {:?} has a malformed scope {scope:?}",
                client.id
            )));
        }
    }
    Ok(file.clients)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let config = MockIdpConfig::default();
        let printed = format!("{config:?}");
        assert!(printed.contains("demo-client"));
        assert!(!printed.contains("demo-secret"));
        assert!(!printed.contains("other-secret"));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn defaults() {
        let config = MockIdpConfig::default();
        assert_eq!(config.token_lifetime, Duration::from_secs(3600));
        assert_eq!(config.latency, Duration::ZERO);
        assert_eq!(config.issuer, "http://mock-idp.tokencache.local");
        assert_eq!(config.clients, demo_clients());
        assert_eq!(config.clients[0].id, "demo-client");
        assert_eq!(
            config.clients[1].scopes,
            ["api/read", "api/write", "api/admin"]
        );
    }

    #[test]
    fn loads_a_clients_file() {
        let dir = std::env::temp_dir().join(format!("mock-idp-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clients.toml");
        std::fs::write(
            &path,
            r#"
                [[clients]]
                id = "a"
                secret = "s1"
                scopes = ["api/read", "api/write"]

                [[clients]]
                id = "b"
                secret = "s2"
            "#,
        )
        .unwrap();
        let clients = MockIdpConfig::load_clients_file(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            clients,
            [
                ClientRecord::new("a", "s1", ["api/read", "api/write"]),
                ClientRecord::new("b", "s2", Vec::<String>::new()),
            ]
        );
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err =
            MockIdpConfig::load_clients_file(Path::new("/nonexistent/clients.toml")).unwrap_err();
        assert!(matches!(err, MockIdpError::ReadClients { .. }), "{err:?}");
    }

    #[test]
    fn parse_errors_name_the_line_but_not_the_text() {
        let text = "[[clients]]\nid = \"a\"\nsecret = \"hunter2\"\nscopes = 5\n";
        let err = parse_clients(text, Path::new("c.toml")).unwrap_err();
        let MockIdpError::ParseClients { line, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*line, Some(4));
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let err = parse_clients("[[clients]]\nid = \"a\"\n", Path::new("c.toml")).unwrap_err();
        assert!(matches!(err, MockIdpError::ParseClients { .. }), "{err:?}");
        let err = parse_clients(
            "[[clients]]\nid=\"a\"\nsecret=\"b\"\ncolour=1\n",
            Path::new("c"),
        )
        .unwrap_err();
        assert!(matches!(err, MockIdpError::ParseClients { .. }), "{err:?}");
    }

    #[test]
    fn rejects_unusable_clients() {
        for text in [
            "[[clients]]\nid = \"\"\nsecret = \"s\"\n",
            "[[clients]]\nid = \"a\"\nsecret = \"s\"\n[[clients]]\nid = \"a\"\nsecret = \"t\"\n",
            "[[clients]]\nid = \"a\"\nsecret = \"s\"\nscopes = [\"api read\"]\n",
            "[[clients]]\nid = \"a\"\nsecret = \"s\"\nscopes = [\"\"]\n",
        ] {
            let err = parse_clients(text, Path::new("c.toml")).unwrap_err();
            assert!(
                matches!(err, MockIdpError::InvalidClients { .. }),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn an_empty_file_has_no_clients() {
        assert!(parse_clients("", Path::new("c.toml")).unwrap().is_empty());
    }
}
