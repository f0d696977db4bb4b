//! Cognito's native API from the settings: `--cognito-idp-upstream` (or
//! its variable), else the config file's `[[routes]]` entry of kind
//! `cognito-idp`, with the native API's own settings.

use tokencache_proxy::CognitoIdpConfig;

use crate::settings::declarations::COGNITO_IDP_UPSTREAM;
use crate::settings::draft::Draft;
use crate::settings::error::{SettingsError, invalid};
use crate::settings::file::{NATIVE_ROUTE_KIND, NativeFileRoute};

/// The native API's configuration, or `None` when it is not fronted. The
/// flag or variable wins over the file.
///
/// # Errors
/// Two native routes in the file, a path other than `/`, or an upstream
/// that is not a URL (the message does not quote it: it may carry
/// credentials).
pub fn native_api(
    draft: &Draft,
    file: &[NativeFileRoute],
) -> Result<Option<CognitoIdpConfig>, SettingsError> {
    let place = format!("[[routes]] kind = \"{NATIVE_ROUTE_KIND}\"");
    if file.len() > 1 {
        return Err(invalid(place, "declared more than once"));
    }
    if let Some(path) = file.first().and_then(|route| route.path.as_deref())
        && path != "/"
    {
        return Err(invalid(
            place,
            "the native API is answered at `/`: leave `path` out",
        ));
    }
    let (upstream, from) = match (&draft.cognito_idp_upstream, file.first()) {
        (Some(upstream), _) => (upstream, format!("--{}", COGNITO_IDP_UPSTREAM.name)),
        (None, Some(route)) => (&route.upstream, place),
        (None, None) => return Ok(None),
    };
    let upstream = upstream
        .parse()
        .map_err(|error| invalid(from, format!("not a URL: {error}")))?;
    let mut config = CognitoIdpConfig::new(upstream);
    config.strip_refresh_token = draft.cognito_strip_refresh_token;
    config.budget = draft.cognito_budget;
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::settings::file::FileConfig;
    use crate::settings::serve::ServeSettings;

    fn resolve(args: &[&str], file: &str, env: &[(&str, &str)]) -> Result<ServeSettings, String> {
        let mut argv = vec!["tokencache", "serve"];
        argv.extend_from_slice(args);
        let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not serve");
        };
        let file = FileConfig::parse(file, Path::new("test.toml")).map_err(|e| e.to_string())?;
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ServeSettings::resolve(args, file, &env).map_err(|e| e.to_string())
    }

    #[test]
    fn the_flag_alone_fronts_the_native_api() {
        let settings = resolve(
            &[
                "--cognito-idp-upstream",
                "https://cognito-idp.eu-west-1.amazonaws.com",
            ],
            "",
            &[],
        )
        .unwrap();
        assert!(settings.proxy.routes.is_empty());
        let native = settings.proxy.cognito_idp.unwrap();
        assert_eq!(
            native.upstream.as_str(),
            "https://cognito-idp.eu-west-1.amazonaws.com/"
        );
        assert!(!native.strip_refresh_token);
        assert!((native.budget.rate_per_sec - 80.0).abs() < f64::EPSILON);
    }

    #[test]
    fn the_file_declares_it_as_a_route_kind_and_the_flag_wins() {
        let file = r#"
            cognito_strip_refresh_token = true
            cognito_budget_rate = 50
            [[routes]]
            path = "/oauth2/token"
            upstream = "https://pool.auth.eu-west-1.amazoncognito.com/oauth2/token"
            [[routes]]
            kind = "cognito-idp"
            upstream = "https://cognito-idp.eu-west-1.amazonaws.com"
        "#;
        let settings = resolve(&[], file, &[]).unwrap();
        assert_eq!(settings.proxy.routes.len(), 1);
        let native = settings.proxy.cognito_idp.unwrap();
        assert_eq!(
            native.upstream.host_str(),
            Some("cognito-idp.eu-west-1.amazonaws.com")
        );
        assert!(native.strip_refresh_token);
        assert!((native.budget.rate_per_sec - 50.0).abs() < f64::EPSILON);

        let settings = resolve(
            &["--cognito-idp-upstream", "http://127.0.0.1:4566"],
            file,
            &[],
        )
        .unwrap();
        assert_eq!(
            settings.proxy.cognito_idp.unwrap().upstream.as_str(),
            "http://127.0.0.1:4566/"
        );
    }

    #[test]
    fn mistakes_are_refused() {
        let native = |extra: &str| {
            format!("[[routes]]\nkind = \"cognito-idp\"\nupstream = \"https://c.example\"\n{extra}")
        };
        for (args, file, expected) in [
            (vec![], native("path = \"/x\""), "leave `path` out"),
            (
                vec![],
                format!("{}\n{}", native(""), native("")),
                "more than once",
            ),
            (
                vec![],
                "[[routes]]\nkind = \"soap\"\nupstream = \"x\"".to_owned(),
                "kind must be",
            ),
            (vec![], native("scope = \"x\""), "unknown field"),
            (
                vec!["--cognito-idp-upstream", "not a url :: secret"],
                String::new(),
                "not a URL",
            ),
            (
                vec!["--cognito-idp-upstream", "ftp://c.example"],
                String::new(),
                "http:// or https://",
            ),
            (
                vec!["--cognito-strip-refresh-token", "maybe"],
                String::new(),
                "true or false",
            ),
        ] {
            let error = resolve(&args, &file, &[]).unwrap_err();
            assert!(error.contains(expected), "{args:?} {file}: {error}");
            assert!(!error.contains("secret"), "{error}");
        }
    }
}
