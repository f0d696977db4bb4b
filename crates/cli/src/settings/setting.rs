//! What declaring a setting says: its names (flag, variable, file key), its
//! help text, and the field of the [`Draft`] it reads its default from and
//! writes its value to.

use std::fmt;

use crate::settings::draft::Draft;
use crate::settings::value::SettingValue;

/// Where a setting lives in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKey {
    /// Nowhere: flag and variable only.
    None,
    /// A key at the top of the file.
    Top(&'static str),
    /// A key in a `[section]`.
    In {
        /// The section.
        section: &'static str,
        /// The key.
        key: &'static str,
        /// An older spelling of the key, still read.
        old: Option<&'static str>,
    },
    /// A key of each `[[routes]]` entry (read with the routes, not as a
    /// setting of its own).
    Route(&'static str),
    /// The `upstream` of the `[[routes]]` entry of this `kind` (read with
    /// the routes).
    RouteKind(&'static str),
}

impl FileKey {
    /// Whether `key` in `section` (`None`: the top) names this setting.
    #[must_use]
    pub fn is(self, section: Option<&str>, key: &str) -> bool {
        match self {
            Self::Top(name) => section.is_none() && name == key,
            Self::In {
                section: own,
                key: name,
                old,
            } => section == Some(own) && (name == key || old == Some(key)),
            Self::None | Self::Route(_) | Self::RouteKind(_) => false,
        }
    }
}

impl fmt::Display for FileKey {
    /// As the README writes it: `` `[server] max_headers` ``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("—"),
            Self::Top(key) => write!(f, "`{key}`"),
            Self::In {
                section,
                key,
                old: None,
            } => write!(f, "`[{section}] {key}`"),
            Self::In {
                section,
                key,
                old: Some(old),
            } => write!(f, "`[{section}] {key}` (or `{old}`)"),
            Self::Route(key) => write!(f, "`[[routes]] {key}`"),
            Self::RouteKind(kind) => write!(f, "`[[routes]] kind = \"{kind}\"`"),
        }
    }
}

/// One setting, declared once: names, help, and its place in the [`Draft`].
pub struct Setting<T> {
    /// The flag, without its dashes; also the setting's name in messages.
    pub name: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// The config file key.
    pub file: FileKey,
    /// The `--help` text, one sentence or a few.
    pub help: &'static str,
    /// What it means when the setting has no value (its field is `None`);
    /// empty when it always has one.
    pub unset: &'static str,
    /// Whether a value can hold a secret (a password in a URL): `--help`
    /// then never prints the variable's value.
    pub secret: bool,
    /// The value in a draft (`None` when unset): read from the default
    /// draft, it is the default.
    pub get: fn(&Draft) -> Option<T>,
    /// Writes a value into a draft.
    pub set: fn(&mut Draft, T),
}

/// A default as `--help` and the README show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// A value, as a user would write it.
    Value(String),
    /// What having no value means.
    Unset(&'static str),
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(value) => f.write_str(value),
            Self::Unset(meaning) => f.write_str(meaning),
        }
    }
}

/// A [`Setting`] of any value kind, so that the settings fit in one list.
pub trait Declared: Sync {
    /// The flag without its dashes.
    fn name(&self) -> &'static str;
    /// The environment variable.
    fn env(&self) -> &'static str;
    /// The config file key.
    fn file(&self) -> FileKey;
    /// The `--help` text.
    fn help(&self) -> &'static str;
    /// How `--help` names the value.
    fn value_name(&self) -> &'static str;
    /// Whether a value can hold a secret.
    fn secret(&self) -> bool;
    /// Its default, shown.
    fn default_shown(&self, defaults: &Draft) -> Shown;
    /// Checks a value without using it (the config file's values are
    /// checked as the file is read).
    ///
    /// # Errors
    /// What is wrong with it.
    fn check(&self, text: &str) -> Result<(), String>;
    /// Writes a value into a draft.
    ///
    /// # Errors
    /// What is wrong with it.
    fn apply(&self, text: &str, draft: &mut Draft) -> Result<(), String>;
}

impl<T: SettingValue> Declared for Setting<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn env(&self) -> &'static str {
        self.env
    }

    fn file(&self) -> FileKey {
        self.file
    }

    fn help(&self) -> &'static str {
        self.help
    }

    fn secret(&self) -> bool {
        self.secret
    }

    fn value_name(&self) -> &'static str {
        T::VALUE_NAME
    }

    fn default_shown(&self, defaults: &Draft) -> Shown {
        match (self.get)(defaults) {
            Some(value) => Shown::Value(value.show()),
            None => Shown::Unset(self.unset),
        }
    }

    fn check(&self, text: &str) -> Result<(), String> {
        T::parse(text).map(drop)
    }

    fn apply(&self, text: &str, draft: &mut Draft) -> Result<(), String> {
        (self.set)(draft, T::parse(text)?);
        Ok(())
    }
}
