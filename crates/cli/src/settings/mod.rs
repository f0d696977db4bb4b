//! `serve`'s settings, each declared once ([`declarations`]) with its flag,
//! environment variable, config file key, help text and default, and laid
//! in layers: flag, then variable, then file, then default.
//!
//! From the bottom up: what a value can be ([`value`]), what a setting
//! declares ([`setting`]), the draft it writes into ([`draft`]), the list
//! of settings ([`declarations`]), the layers that give values
//! ([`command_line`], [`file`]), and their resolution ([`serve`]).

pub mod cognito;
pub mod command_line;
pub mod declarations;
pub mod draft;
pub mod error;
pub mod file;
#[cfg(test)]
mod readme_table;
pub mod serve;
pub mod setting;
pub mod value;

pub use self::command_line::{LogArgs, ServeArgs};
pub use self::draft::LogSettings;
pub use self::error::SettingsError;
pub use self::serve::ServeSettings;
pub use self::value::LogFormat;
