//! The config file (`--config`), the layer under flags and variables: the
//! declared settings' file keys, and `[[routes]]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokencache_proxy::BudgetConfig;

use crate::settings::declarations::SERVE;
use crate::settings::draft::Draft;
use crate::settings::error::{SettingsError, invalid};
use crate::settings::setting::{Declared, FileKey};

/// `[[routes]]`: a path and the token endpoint behind it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// The path the proxy answers on.
    pub path: String,
    /// The token endpoint.
    pub upstream: String,
    /// The budget group it draws on, declared under `[budgets.NAME]`;
    /// none: its upstream host's group.
    pub budget: Option<String>,
}

/// `[budgets.NAME]`: a budget group's rate and burst.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBudget {
    /// Sustained requests per second; 0 means unlimited.
    rate: f64,
    /// Requests that may go at once after a quiet spell.
    burst: Option<u32>,
}

impl FileBudget {
    fn config(self) -> Result<BudgetConfig, String> {
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            return Err("rate must be a number of requests per second, 0 or more".to_owned());
        }
        let burst = self.burst.unwrap_or(BudgetConfig::default().burst);
        if burst == 0 {
            return Err("burst must be at least 1".to_owned());
        }
        Ok(BudgetConfig {
            rate_per_sec: self.rate,
            burst,
        })
    }
}

/// `[[routes]]` with `kind = "cognito-idp"`: Cognito's native API, always
/// at `/`. `Debug` leaves the URL out: it may carry credentials.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeFileRoute {
    /// The native API's endpoint.
    pub upstream: String,
    /// Only `/`, if given: the protocol is answered there.
    pub path: Option<String>,
}

impl std::fmt::Debug for NativeFileRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeFileRoute")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The `kind` of a `[[routes]]` entry that fronts Cognito's native API.
pub const NATIVE_ROUTE_KIND: &str = "cognito-idp";

/// One setting's value in the file.
#[derive(Clone)]
struct FileValue {
    setting: &'static dyn Declared,
    /// The key as written, for messages.
    place: String,
    text: String,
}

/// A read config file: every value already checked.
#[derive(Clone, Default)]
pub struct FileConfig {
    path: PathBuf,
    values: Vec<FileValue>,
    /// The routes it declares.
    pub routes: Vec<FileRoute>,
    /// The `[[routes]]` of kind `cognito-idp`.
    pub native_routes: Vec<NativeFileRoute>,
    /// The `[budgets.NAME]` groups.
    pub budgets: BTreeMap<String, BudgetConfig>,
}

impl std::fmt::Debug for FileConfig {
    /// Keys, not values, like the command line's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileConfig")
            .field("path", &self.path)
            .field(
                "keys",
                &self.values.iter().map(|v| &v.place).collect::<Vec<_>>(),
            )
            .field("routes", &self.routes)
            .field("native_routes", &self.native_routes)
            .field("budgets", &self.budgets)
            .finish()
    }
}

impl FileConfig {
    /// Reads and checks a config file.
    ///
    /// # Errors
    /// [`SettingsError`] when it cannot be read, is not TOML, has a key no
    /// setting has, or a value that is not valid.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks the text of a config file read from `path`.
    ///
    /// # Errors
    /// See [`FileConfig::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, SettingsError> {
        let error = |message: String| SettingsError::ParseFile {
            path: path.to_owned(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| error(e.to_string()))?;
        let mut file = Self {
            path: path.to_owned(),
            ..Self::default()
        };
        for (key, value) in table {
            match value {
                toml::Value::Array(routes) if key == "routes" => {
                    for route in routes {
                        file.push_route(route)
                            .map_err(|e| error(format!("[[routes]]: {e}")))?;
                    }
                }
                toml::Value::Table(groups) if key == "budgets" => {
                    for (name, group) in groups {
                        let budget = FileBudget::deserialize(group)
                            .map_err(|e| e.to_string())
                            .and_then(FileBudget::config)
                            .map_err(|e| error(format!("[budgets.{name}]: {e}")))?;
                        file.budgets.insert(name, budget);
                    }
                }
                toml::Value::Table(entries) if is_section(&key) => {
                    for (entry, value) in entries {
                        file.take(Some(&key), &entry, &value).map_err(error)?;
                    }
                }
                value => file.take(None, &key, &value).map_err(error)?,
            }
        }
        Ok(file)
    }

    /// Records one `[[routes]]` entry, by its `kind` (`oauth2`, the
    /// default, or `cognito-idp`).
    fn push_route(&mut self, route: toml::Value) -> Result<(), String> {
        let toml::Value::Table(mut table) = route else {
            return Err("expected a table".to_owned());
        };
        match table.remove("kind") {
            None => {}
            Some(toml::Value::String(kind)) if kind == "oauth2" => {}
            Some(toml::Value::String(kind)) if kind == NATIVE_ROUTE_KIND => {
                let route = toml::Value::Table(table)
                    .try_into()
                    .map_err(|e: toml::de::Error| e.to_string())?;
                self.native_routes.push(route);
                return Ok(());
            }
            Some(_) => {
                return Err(format!(
                    "kind must be \"oauth2\" (the default) or \"{NATIVE_ROUTE_KIND}\""
                ));
            }
        }
        let route = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        self.routes.push(route);
        Ok(())
    }

    /// Records the value of `key` in `section`, checked.
    fn take(
        &mut self,
        section: Option<&str>,
        key: &str,
        value: &toml::Value,
    ) -> Result<(), String> {
        let place = match section {
            Some(section) => format!("[{section}] {key}"),
            None => key.to_owned(),
        };
        let setting = SERVE
            .iter()
            .copied()
            .find(|setting| setting.file().is(section, key))
            .ok_or_else(|| format!("unknown key `{place}`"))?;
        let text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            _ => return Err(format!("{place}: expected a string, a number or a boolean")),
        };
        setting
            .check(&text)
            .map_err(|message| format!("{place}: {message}"))?;
        if self
            .values
            .iter()
            .any(|given| given.setting.name() == setting.name())
        {
            return Err(format!("{place}: given twice, by its old and its new name"));
        }
        self.values.push(FileValue {
            setting,
            place,
            text,
        });
        Ok(())
    }

    /// Writes the file's value for `setting`, if any, into `draft`.
    ///
    /// # Errors
    /// A value that is not valid (already checked as the file was read, so
    /// only if a setting's check and use disagree).
    pub fn apply(&self, setting: &dyn Declared, draft: &mut Draft) -> Result<(), SettingsError> {
        let Some(value) = self
            .values
            .iter()
            .find(|value| value.setting.name() == setting.name())
        else {
            return Ok(());
        };
        setting.apply(&value.text, draft).map_err(|message| {
            invalid(
                format!("{} in {}", value.place, self.path.display()),
                message,
            )
        })
    }
}

/// Whether `key` is a `[section]` some setting lives in.
fn is_section(key: &str) -> bool {
    SERVE
        .iter()
        .any(|setting| matches!(setting.file(), FileKey::In { section, .. } if section == key))
}
