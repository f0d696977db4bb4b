//! Settings that can be changed while the mock IdP runs, and the updates
//! that change them (`POST /control`).
//!
//! To add a knob (a fault mode, say): add a field to [`Settings`], an
//! `Option` field to [`ControlUpdate`], a line to [`Settings::apply`], and
//! the field to the JSON form below. Callers that build a [`ControlUpdate`]
//! with `..Default::default()` keep compiling.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The run-time settings of a mock IdP.
///
/// Its JSON form (the answer of `/control`) is
/// `{"latency_ms": 0, "token_lifetime_secs": 3600}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "SettingsJson", from = "SettingsJson")]
pub struct Settings {
    /// The delay added before every answer of `/oauth2/token`.
    pub latency: Duration,
    /// The lifetime of newly issued access tokens, in whole seconds.
    pub token_lifetime: Duration,
}

impl Settings {
    /// Applies the fields that `update` sets, leaving the others as they are.
    pub fn apply(&mut self, update: &ControlUpdate) {
        if let Some(ms) = update.latency_ms {
            self.latency = Duration::from_millis(ms);
        }
        if let Some(secs) = update.token_lifetime_secs {
            self.token_lifetime = Duration::from_secs(secs);
        }
    }
}

/// The body of `POST /control`: each field that is present changes one
/// setting. Unknown fields are refused, so a typo is not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlUpdate {
    /// New latency of `/oauth2/token`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// New lifetime of issued access tokens, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_secs: Option<u64>,
}

/// The wire form of [`Settings`], in the units of [`ControlUpdate`].
#[derive(Serialize, Deserialize)]
struct SettingsJson {
    latency_ms: u64,
    token_lifetime_secs: u64,
}

impl From<Settings> for SettingsJson {
    fn from(settings: Settings) -> Self {
        Self {
            latency_ms: u64::try_from(settings.latency.as_millis()).unwrap_or(u64::MAX),
            token_lifetime_secs: settings.token_lifetime.as_secs(),
        }
    }
}

impl From<SettingsJson> for Settings {
    fn from(json: SettingsJson) -> Self {
        Self {
            latency: Duration::from_millis(json.latency_ms),
            token_lifetime: Duration::from_secs(json.token_lifetime_secs),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn apply_changes_only_what_is_set() {
        let mut settings = Settings {
            latency: Duration::ZERO,
            token_lifetime: Duration::from_secs(3600),
        };
        settings.apply(&ControlUpdate {
            token_lifetime_secs: Some(60),
            ..ControlUpdate::default()
        });
        assert_eq!(settings.token_lifetime, Duration::from_secs(60));
        assert_eq!(settings.latency, Duration::ZERO);
        settings.apply(&ControlUpdate {
            latency_ms: Some(250),
            ..ControlUpdate::default()
        });
        assert_eq!(settings.latency, Duration::from_millis(250));
        assert_eq!(settings.token_lifetime, Duration::from_secs(60));
    }

    #[test]
    fn json_round_trip() {
        let settings = Settings {
            latency: Duration::from_millis(1500),
            token_lifetime: Duration::from_secs(90),
        };
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"latency_ms": 1500, "token_lifetime_secs": 90})
        );
        assert_eq!(serde_json::from_value::<Settings>(json).unwrap(), settings);
    }

    #[test]
    fn updates_refuse_unknown_fields() {
        assert!(serde_json::from_str::<ControlUpdate>(r#"{"latency":5}"#).is_err());
        assert_eq!(
            serde_json::from_str::<ControlUpdate>("{}").unwrap(),
            ControlUpdate::default()
        );
    }
}
