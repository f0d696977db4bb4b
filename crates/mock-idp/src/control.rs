//! Settings that can be changed while the mock IdP runs, and the updates
//! that change them (`POST /control`).
//!
//! To add a knob (a fault mode, say): add a field to [`Settings`] and to
//! [`Settings::healthy`] if it is a fault, an `Option` field to
//! [`ControlUpdate`] (and to [`ControlUpdate::healthy`] if it is a fault),
//! a check to [`ControlUpdate::validate`] if some values are refused, a
//! line to [`Settings::apply`], and the field to `SettingsJson` and to the
//! JSON form in the docs of [`Settings`] and of the crate. Callers that
//! build a [`ControlUpdate`] with `..Default::default()` keep compiling.
//! The behaviour itself goes where it applies (the faults of
//! `/oauth2/token` in `faults.rs`).

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::MockIdpError;

/// The run-time settings of a mock IdP.
///
/// Its JSON form (the answer of `/control`), here with the defaults, is
///
/// ```json
/// {"latency_ms": 0, "token_lifetime_secs": 3600,
///  "rate_limit_per_sec": null, "throttle_style": "http429",
///  "error_rate": 0.0, "reset_rate": 0.0, "garbage_rate": 0.0, "hang_rate": 0.0}
/// ```
///
/// The fault fields apply only to `POST /oauth2/token`; see the crate docs
/// for what each does and in which order they are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "SettingsJson", try_from = "SettingsJson")]
pub struct Settings {
    /// The delay added before every answer of `/oauth2/token`.
    pub latency: Duration,
    /// The lifetime of newly issued access tokens, in whole seconds.
    pub token_lifetime: Duration,
    /// At most this many token requests a second, all clients together (a
    /// token bucket whose burst is the rate); `None` is unlimited.
    pub rate_limit_per_sec: Option<NonZeroU32>,
    /// How a request over the rate limit is refused.
    pub throttle_style: ThrottleStyle,
    /// The share of token requests answered `500`/`503 server_error`, in
    /// `[0, 1]`.
    pub error_rate: f64,
    /// The share of token requests whose connection is closed without an
    /// answer, in `[0, 1]`.
    pub reset_rate: f64,
    /// The share of token requests answered `200` with a body that is not a
    /// token, in `[0, 1]`.
    pub garbage_rate: f64,
    /// The share of token requests never answered, in `[0, 1]`.
    pub hang_rate: f64,
}

/// How a token request over the rate limit is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ThrottleStyle {
    /// `429 Too Many Requests`, `Retry-After` in whole seconds and
    /// `{"error":"too_many_requests","error_description":"Rate exceeded"}`.
    #[default]
    #[serde(rename = "http429")]
    Http429,
    /// `400` with
    /// `{"error":"TooManyRequestsException","error_description":"Rate exceeded"}`,
    /// the form some of Cognito's throttles take, which a client cannot tell
    /// from a refusal by status alone.
    #[serde(rename = "cognito400")]
    Cognito400,
}

impl Settings {
    /// The given latency and token lifetime, with every fault off.
    #[must_use]
    pub fn healthy(latency: Duration, token_lifetime: Duration) -> Self {
        Self {
            latency,
            token_lifetime,
            rate_limit_per_sec: None,
            throttle_style: ThrottleStyle::default(),
            error_rate: 0.0,
            reset_rate: 0.0,
            garbage_rate: 0.0,
            hang_rate: 0.0,
        }
    }

    /// Applies the fields that `update` sets, leaving the others as they are.
    ///
    /// A share outside `[0, 1]` is clamped into it (NaN counts as 0); call
    /// [`ControlUpdate::validate`] first to refuse such updates instead, as
    /// `POST /control` does.
    pub fn apply(&mut self, update: &ControlUpdate) {
        if let Some(ms) = update.latency_ms {
            self.latency = Duration::from_millis(ms);
        }
        if let Some(secs) = update.token_lifetime_secs {
            self.token_lifetime = Duration::from_secs(secs);
        }
        if let Some(per_sec) = update.rate_limit_per_sec {
            self.rate_limit_per_sec = NonZeroU32::new(per_sec);
        }
        if let Some(style) = update.throttle_style {
            self.throttle_style = style;
        }
        let shares = [
            (update.error_rate, &mut self.error_rate),
            (update.reset_rate, &mut self.reset_rate),
            (update.garbage_rate, &mut self.garbage_rate),
            (update.hang_rate, &mut self.hang_rate),
        ];
        for (new, share) in shares {
            if let Some(new) = new {
                *share = clamp_share(new);
            }
        }
    }
}

/// `share` forced into `[0, 1]`, NaN to 0.
fn clamp_share(share: f64) -> f64 {
    if share.is_nan() {
        0.0
    } else {
        share.clamp(0.0, 1.0)
    }
}

/// The body of `POST /control`: each field that is present changes one
/// setting. Unknown fields are refused, so a typo is not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlUpdate {
    /// New latency of `/oauth2/token`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// New lifetime of issued access tokens, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_secs: Option<u64>,
    /// New rate limit of `/oauth2/token`, in requests a second; `Some(0)`
    /// removes the limit. In JSON, `0` and `null` remove it, and an absent
    /// field leaves it as it is. Setting it (even to the same value) starts
    /// the limit over with a full bucket.
    #[serde(
        default,
        deserialize_with = "null_as_zero",
        skip_serializing_if = "Option::is_none"
    )]
    pub rate_limit_per_sec: Option<u32>,
    /// New way to refuse requests over the rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_style: Option<ThrottleStyle>,
    /// New share of token requests answered `500`/`503`, in `[0, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// New share of token requests whose connection is closed unanswered,
    /// in `[0, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_rate: Option<f64>,
    /// New share of token requests answered `200` with garbage, in `[0, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garbage_rate: Option<f64>,
    /// New share of token requests never answered, in `[0, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hang_rate: Option<f64>,
}

impl ControlUpdate {
    /// An update that turns every fault off: no rate limit, and every share
    /// zero.
    ///
    /// Latency, token lifetime and the throttle style are not faults, and
    /// keep their values.
    #[must_use]
    pub fn healthy() -> Self {
        Self {
            rate_limit_per_sec: Some(0),
            error_rate: Some(0.0),
            reset_rate: Some(0.0),
            garbage_rate: Some(0.0),
            hang_rate: Some(0.0),
            ..Self::default()
        }
    }

    /// Checks the values `POST /control` would refuse.
    ///
    /// # Errors
    ///
    /// [`MockIdpError::InvalidSetting`] if a share is outside `[0, 1]` or
    /// is NaN.
    pub fn validate(&self) -> Result<(), MockIdpError> {
        let shares = [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
            ("garbage_rate", self.garbage_rate),
            ("hang_rate", self.hang_rate),
        ];
        for (name, share) in shares {
            check_share(name, share)?;
        }
        Ok(())
    }
}

/// Refuses a share outside `[0, 1]` (NaN included).
fn check_share(name: &'static str, share: Option<f64>) -> Result<(), MockIdpError> {
    match share {
        Some(share) if !(0.0..=1.0).contains(&share) => Err(MockIdpError::InvalidSetting {
            reason: format!("{name} must be between 0 and 1, not {share}"),
        }),
        _ => Ok(()),
    }
}

/// Reads `null` as `Some(0)`, so that in JSON an explicit `null` removes
/// the rate limit while an absent field (`default`) leaves it alone.
fn null_as_zero<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    Ok(Some(Option::<u32>::deserialize(deserializer)?.unwrap_or(0)))
}

/// The wire form of [`Settings`], in the units of [`ControlUpdate`]. The
/// fault fields may be absent (read as off), so JSON written before they
/// existed still reads.
#[derive(Serialize, Deserialize)]
struct SettingsJson {
    latency_ms: u64,
    token_lifetime_secs: u64,
    #[serde(default)]
    rate_limit_per_sec: Option<NonZeroU32>,
    #[serde(default)]
    throttle_style: ThrottleStyle,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    reset_rate: f64,
    #[serde(default)]
    garbage_rate: f64,
    #[serde(default)]
    hang_rate: f64,
}

impl From<Settings> for SettingsJson {
    fn from(settings: Settings) -> Self {
        Self {
            latency_ms: u64::try_from(settings.latency.as_millis()).unwrap_or(u64::MAX),
            token_lifetime_secs: settings.token_lifetime.as_secs(),
            rate_limit_per_sec: settings.rate_limit_per_sec,
            throttle_style: settings.throttle_style,
            error_rate: settings.error_rate,
            reset_rate: settings.reset_rate,
            garbage_rate: settings.garbage_rate,
            hang_rate: settings.hang_rate,
        }
    }
}

impl TryFrom<SettingsJson> for Settings {
    type Error = MockIdpError;

    fn try_from(json: SettingsJson) -> Result<Self, Self::Error> {
        let update = ControlUpdate {
            latency_ms: Some(json.latency_ms),
            token_lifetime_secs: Some(json.token_lifetime_secs),
            rate_limit_per_sec: Some(json.rate_limit_per_sec.map_or(0, NonZeroU32::get)),
            throttle_style: Some(json.throttle_style),
            error_rate: Some(json.error_rate),
            reset_rate: Some(json.reset_rate),
            garbage_rate: Some(json.garbage_rate),
            hang_rate: Some(json.hang_rate),
        };
        update.validate()?;
        let mut settings = Self::healthy(Duration::ZERO, Duration::ZERO);
        settings.apply(&update);
        Ok(settings)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        Settings::healthy(Duration::ZERO, Duration::from_secs(3600))
    }

    #[test]
    fn apply_changes_only_what_is_set() {
        let mut settings = defaults();
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
        settings.apply(&ControlUpdate {
            rate_limit_per_sec: Some(50),
            throttle_style: Some(ThrottleStyle::Cognito400),
            hang_rate: Some(0.25),
            ..ControlUpdate::default()
        });
        assert_eq!(settings.rate_limit_per_sec, NonZeroU32::new(50));
        assert_eq!(settings.throttle_style, ThrottleStyle::Cognito400);
        assert!((settings.hang_rate - 0.25).abs() < f64::EPSILON);
        assert_eq!(settings.latency, Duration::from_millis(250));
        assert_eq!(settings.error_rate, 0.0);
    }

    #[test]
    fn healthy_turns_every_fault_off_and_keeps_the_rest() {
        let mut settings = defaults();
        settings.apply(&ControlUpdate {
            latency_ms: Some(5),
            rate_limit_per_sec: Some(3),
            throttle_style: Some(ThrottleStyle::Cognito400),
            error_rate: Some(1.0),
            reset_rate: Some(1.0),
            garbage_rate: Some(1.0),
            hang_rate: Some(1.0),
            ..ControlUpdate::default()
        });
        settings.apply(&ControlUpdate::healthy());
        let mut expected = Settings::healthy(Duration::from_millis(5), Duration::from_secs(3600));
        expected.throttle_style = ThrottleStyle::Cognito400;
        assert_eq!(settings, expected);
    }

    #[test]
    fn apply_clamps_shares_that_validate_refuses() {
        for (share, clamped) in [(1.5, 1.0), (-0.5, 0.0), (f64::NAN, 0.0)] {
            let update = ControlUpdate {
                error_rate: Some(share),
                ..ControlUpdate::default()
            };
            assert!(update.validate().is_err(), "{share}");
            let mut settings = defaults();
            settings.apply(&update);
            assert_eq!(settings.error_rate, clamped, "{share}");
        }
        for share in [0.0, 0.5, 1.0] {
            let update = ControlUpdate {
                hang_rate: Some(share),
                ..ControlUpdate::default()
            };
            update.validate().unwrap();
        }
        let error = ControlUpdate {
            garbage_rate: Some(1.5),
            ..ControlUpdate::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid setting: garbage_rate must be between 0 and 1, not 1.5"
        );
    }

    #[test]
    fn json_round_trip() {
        let mut settings = Settings::healthy(Duration::from_millis(1500), Duration::from_secs(90));
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "latency_ms": 1500, "token_lifetime_secs": 90,
                "rate_limit_per_sec": null, "throttle_style": "http429",
                "error_rate": 0.0, "reset_rate": 0.0, "garbage_rate": 0.0, "hang_rate": 0.0,
            })
        );
        assert_eq!(serde_json::from_value::<Settings>(json).unwrap(), settings);

        settings.rate_limit_per_sec = NonZeroU32::new(50);
        settings.throttle_style = ThrottleStyle::Cognito400;
        settings.reset_rate = 0.5;
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["rate_limit_per_sec"], 50);
        assert_eq!(json["throttle_style"], "cognito400");
        assert_eq!(serde_json::from_value::<Settings>(json).unwrap(), settings);
    }

    #[test]
    fn settings_json_with_a_bad_share_is_refused() {
        let mut json = serde_json::to_value(defaults()).unwrap();
        json["hang_rate"] = serde_json::json!(2.0);
        assert!(serde_json::from_value::<Settings>(json).is_err());
        let old = serde_json::json!({"latency_ms": 0, "token_lifetime_secs": 3600});
        assert_eq!(serde_json::from_value::<Settings>(old).unwrap(), defaults());
    }

    #[test]
    fn updates_refuse_unknown_fields() {
        assert!(serde_json::from_str::<ControlUpdate>(r#"{"latency":5}"#).is_err());
        assert!(serde_json::from_str::<ControlUpdate>(r#"{"throttle_style":"http503"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<ControlUpdate>("{}").unwrap(),
            ControlUpdate::default()
        );
    }

    #[test]
    fn rate_limit_json_null_and_zero_clear_absent_keeps() {
        let parse = |json: &str| serde_json::from_str::<ControlUpdate>(json).unwrap();
        assert_eq!(
            parse(r#"{"rate_limit_per_sec": null}"#).rate_limit_per_sec,
            Some(0)
        );
        assert_eq!(
            parse(r#"{"rate_limit_per_sec": 0}"#).rate_limit_per_sec,
            Some(0)
        );
        assert_eq!(
            parse(r#"{"rate_limit_per_sec": 50}"#).rate_limit_per_sec,
            Some(50)
        );
        assert_eq!(parse("{}").rate_limit_per_sec, None);

        let mut settings = defaults();
        settings.apply(&parse(r#"{"rate_limit_per_sec": 50}"#));
        settings.apply(&parse(r#"{"error_rate": 0.5}"#));
        assert_eq!(settings.rate_limit_per_sec, NonZeroU32::new(50));
        settings.apply(&parse(r#"{"rate_limit_per_sec": null}"#));
        assert_eq!(settings.rate_limit_per_sec, None);
    }

    #[test]
    fn healthy_update_json() {
        assert_eq!(
            serde_json::to_value(ControlUpdate::healthy()).unwrap(),
            serde_json::json!({
                "rate_limit_per_sec": 0, "error_rate": 0.0, "reset_rate": 0.0,
                "garbage_rate": 0.0, "hang_rate": 0.0,
            })
        );
    }
}
