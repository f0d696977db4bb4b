//! `tokencache token`: prints an access token from a token endpoint (or
//! the whole token response with `--json`), fetched with the client
//! library, so a shell script gets the same retries and backoff as a
//! service.
//!
//! The client secret never comes from the command line, where `ps` and the
//! shell history would show it: it is read from `TOKENCACHE_CLIENT_SECRET`
//! or, if that is unset, from the first line of standard input.

use std::io::{BufRead, IsTerminal as _, Write as _};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokencache_client::{AuthMethod, ClientCredentials};

use crate::environment::{Environment, ProcessEnvironment};

/// The environment variable holding the client secret.
pub const CLIENT_SECRET_VAR: &str = "TOKENCACHE_CLIENT_SECRET";

/// `tokencache token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The token endpoint, e.g.
    /// https://<domain>.auth.<region>.amazoncognito.com/oauth2/token, or a
    /// tokencache proxy in front of it.
    // A URL may carry credentials: --help never shows the variable's value.
    #[arg(long, env = "TOKENCACHE_TOKEN_URL", hide_env_values = true)]
    pub token_url: String,

    /// The client id. The secret is read from TOKENCACHE_CLIENT_SECRET or,
    /// if that is unset, from the first line of standard input; never from
    /// the command line.
    #[arg(long, env = "TOKENCACHE_CLIENT_ID")]
    pub client_id: String,

    /// The scopes to ask for, space-separated ("api/read api/write"); may
    /// be repeated. Without it, the endpoint grants the client's defaults.
    #[arg(long)]
    pub scope: Vec<String>,

    /// An extra form parameter, such as aws_client_metadata or resource;
    /// may be repeated.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,

    /// How the client authenticates: HTTP Basic, or id and secret in the
    /// form body.
    #[arg(long, value_enum, default_value_t = AuthMethodArg::Basic)]
    pub auth_method: AuthMethodArg,

    /// Print the whole token response (JSON) instead of the token alone.
    #[arg(long)]
    pub json: bool,

    /// The longest wait for the token, retries included.
    #[arg(long, default_value = "30s")]
    pub timeout: humantime::Duration,
}

/// `--auth-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethodArg {
    /// `Authorization: Basic` (client_secret_basic).
    Basic,
    /// `client_id` and `client_secret` in the body (client_secret_post).
    Body,
}

impl From<AuthMethodArg> for AuthMethod {
    fn from(method: AuthMethodArg) -> Self {
        match method {
            AuthMethodArg::Basic => Self::Basic,
            AuthMethodArg::Body => Self::Body,
        }
    }
}

/// Runs `tokencache token`: prints the token (or the response) and a
/// newline on standard output.
///
/// # Errors
/// When no secret is given, the settings are invalid or no token could be
/// had (the endpoint's OAuth error is in the message).
pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() && ProcessEnvironment.var(CLIENT_SECRET_VAR).is_none() {
        eprintln!("tokencache: reading the client secret from standard input (first line)");
    }
    // Blocking read before any async work starts: there is nothing else to
    // run meanwhile.
    let secret = read_secret(&ProcessEnvironment, &mut stdin.lock())?;
    let output = fetch(&args, secret).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{output}").context("writing to standard output")?;
    stdout.flush().context("writing to standard output")
}

/// The client secret: `TOKENCACHE_CLIENT_SECRET` if set, else the first
/// line of `input` without its line ending.
fn read_secret(env: &impl Environment, input: &mut impl BufRead) -> anyhow::Result<String> {
    if let Some(secret) = env.var(CLIENT_SECRET_VAR).filter(|s| !s.is_empty()) {
        return Ok(secret);
    }
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the client secret from standard input")?;
    let end = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(end);
    if line.is_empty() {
        anyhow::bail!("no client secret: set {CLIENT_SECRET_VAR} or write it on standard input");
    }
    Ok(line)
}

/// What to print: the access token, or the whole response with `--json`.
async fn fetch(args: &TokenArgs, secret: String) -> anyhow::Result<String> {
    let mut builder = ClientCredentials::builder()
        .token_url(&args.token_url)
        .client_id(&args.client_id)
        .client_secret(secret)
        .scopes(args.scope.iter().flat_map(|scope| scope.split_whitespace()))
        .auth_method(args.auth_method.into())
        .timeout(args.timeout.into());
    for (name, value) in &args.params {
        builder = builder.param(name, value);
    }
    let source = builder.build()?;
    let token = source.token().await.context("getting a token")?;
    Ok(if args.json {
        token.response_json().to_owned()
    } else {
        token.secret().to_owned()
    })
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got `{text}`")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;
    use tokencache_mock_idp::{MockIdp, MockIdpConfig, decode_claims_unverified};

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        token: TokenArgs,
    }

    fn parse(argv: &[&str]) -> Result<TokenArgs, clap::Error> {
        Command::try_parse_from(std::iter::once("token").chain(argv.iter().copied()))
            .map(|command| command.token)
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn flags() {
        let args = parse(&[
            "--token-url",
            "https://idp.example/oauth2/token",
            "--client-id",
            "id",
            "--scope",
            "api/read api/write",
            "--param",
            "resource=https://api.example",
            "--auth-method",
            "body",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.scope, ["api/read api/write"]);
        assert_eq!(
            args.params,
            [("resource".to_owned(), "https://api.example".to_owned())]
        );
        assert_eq!(args.auth_method, AuthMethodArg::Body);
        assert!(args.json);
        assert!(
            parse(&["--client-id", "id"]).is_err(),
            "--token-url is required"
        );
        assert!(parse(&["--token-url", "u", "--client-id", "i", "--param", "novalue"]).is_err());
    }

    #[test]
    fn the_secret_is_never_a_flag() {
        let error = parse(&[
            "--token-url",
            "https://idp.example/oauth2/token",
            "--client-id",
            "id",
            "--client-secret",
            "s",
        ])
        .unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn secret_from_the_environment_first_then_standard_input() {
        let from_env = read_secret(
            &env(&[(CLIENT_SECRET_VAR, "env-secret")]),
            &mut "stdin-secret\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(from_env, "env-secret");
        let from_stdin =
            read_secret(&env(&[]), &mut "stdin-secret\r\nsecond line\n".as_bytes()).unwrap();
        assert_eq!(from_stdin, "stdin-secret");
        assert!(read_secret(&env(&[]), &mut "".as_bytes()).is_err());
        assert!(read_secret(&env(&[(CLIENT_SECRET_VAR, "")]), &mut "\n".as_bytes()).is_err());
    }

    #[tokio::test]
    async fn prints_a_token_or_the_response() {
        let idp = MockIdp::new(MockIdpConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let token_url = format!("http://{}/oauth2/token", listener.local_addr().unwrap());
        tokio::spawn(idp.clone().serve(listener, std::future::pending()));
        let argv = |extra: &[&str]| {
            let mut argv = vec!["--token-url", &token_url, "--client-id", "demo-client"];
            argv.extend_from_slice(extra);
            parse(&argv).unwrap()
        };

        let token = fetch(&argv(&["--scope", "api/write"]), "demo-secret".to_owned())
            .await
            .unwrap();
        let claims = idp.verify_access_token(&token).unwrap();
        assert_eq!(claims["scope"], "api/write");

        let json = fetch(
            &argv(&[
                "--json",
                "--auth-method",
                "body",
                "--param",
                "resource=urn:x",
            ]),
            "demo-secret".to_owned(),
        )
        .await
        .unwrap();
        let response: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(response["token_type"], "Bearer");
        let token = response["access_token"].as_str().unwrap();
        assert_eq!(decode_claims_unverified(token).unwrap()["aud"], "urn:x");

        let refused = fetch(&argv(&[]), "wrong-secret-xyz".to_owned())
            .await
            .unwrap_err();
        let message = format!("{refused:#}");
        assert!(message.contains("invalid_client"), "{message}");
        assert!(!message.contains("wrong-secret-xyz"), "{message}");
    }
}
