//! The two top layers, flags and environment variables, which clap reads:
//! the declared settings become clap arguments, with their real defaults
//! in `--help`.

use std::fmt;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};

use crate::environment::Environment;
use crate::settings::declarations::{CONFIG, LOGGING, SERVE};
use crate::settings::draft::{Draft, LogSettings};
use crate::settings::error::{SettingsError, invalid};
use crate::settings::setting::Declared;

/// Where a value on the command line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Flag,
    Environment,
}

/// One value given by flag or variable.
#[derive(Clone)]
struct Given {
    setting: &'static dyn Declared,
    text: String,
    origin: Origin,
}

impl Given {
    /// The flag or the variable, for messages.
    fn place(&self) -> String {
        match self.origin {
            Origin::Flag => format!("--{}", self.setting.name()),
            Origin::Environment => self.setting.env().to_owned(),
        }
    }
}

/// The values given by flag or variable, for a list of declared settings.
#[derive(Clone, Default)]
pub struct CommandLine {
    given: Vec<Given>,
}

impl CommandLine {
    /// Adds `settings` to a clap command, as `--name <NAME>` with its
    /// variable and its default in the help.
    fn augment(command: Command, settings: &[&'static dyn Declared]) -> Command {
        let defaults = Draft::default();
        settings.iter().fold(command, |command, setting| {
            command.arg(arg(*setting, &defaults))
        })
    }

    fn read(matches: &ArgMatches, settings: &[&'static dyn Declared]) -> Self {
        let given = settings
            .iter()
            .filter_map(|setting| {
                let text = matches.get_one::<String>(setting.name())?.clone();
                let origin = match matches.value_source(setting.name()) {
                    Some(ValueSource::EnvVariable) => Origin::Environment,
                    _ => Origin::Flag,
                };
                Some(Given {
                    setting: *setting,
                    text,
                    origin,
                })
            })
            .collect();
        Self { given }
    }

    fn update(&mut self, newer: Self) {
        for given in newer.given {
            self.given
                .retain(|old| old.setting.name() != given.setting.name());
            self.given.push(given);
        }
    }

    /// The text given for `setting`, if any.
    #[must_use]
    pub fn text(&self, setting: &dyn Declared) -> Option<&str> {
        self.given
            .iter()
            .find(|given| given.setting.name() == setting.name())
            .map(|given| given.text.as_str())
    }

    /// Writes the value given for `setting`, if any, into `draft`; says
    /// whether there was one.
    ///
    /// # Errors
    /// A value that is not valid, named by its flag or variable.
    pub fn apply(&self, setting: &dyn Declared, draft: &mut Draft) -> Result<bool, SettingsError> {
        let Some(given) = self
            .given
            .iter()
            .find(|given| given.setting.name() == setting.name())
        else {
            return Ok(false);
        };
        setting
            .apply(&given.text, draft)
            .map_err(|message| invalid(given.place(), message))?;
        Ok(true)
    }
}

impl fmt::Debug for CommandLine {
    /// The names of what was given, never the values: one may be a
    /// password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.given.iter().map(Given::place))
            .finish()
    }
}

/// A clap argument for a declared setting.
fn arg(setting: &'static dyn Declared, defaults: &Draft) -> Arg {
    let default = setting.default_shown(defaults);
    Arg::new(setting.name())
        .long(setting.name())
        .value_name(setting.value_name())
        .env(setting.env())
        .hide_env_values(setting.secret())
        .value_parser(clap::builder::ValueParser::string())
        .help(format!("{} [default: {default}]", setting.help()))
}

/// `tokencache serve`'s flags: every setting in [`SERVE`]. A flag overrides
/// its environment variable, which overrides the config file, which
/// overrides the default.
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    /// What was given.
    pub given: CommandLine,
}

impl ServeArgs {
    /// The config file named by `--config` or its variable.
    #[must_use]
    pub fn config_file(&self) -> Option<std::path::PathBuf> {
        self.given.text(&CONFIG).map(Into::into)
    }
}

impl Args for ServeArgs {
    fn augment_args(command: Command) -> Command {
        CommandLine::augment(command, &SERVE).mut_arg(CONFIG.name, |arg| arg.short('c'))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self {
            given: CommandLine::read(matches, &SERVE),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.given.update(CommandLine::read(matches, &SERVE));
        Ok(())
    }
}

/// The logging flags of the subcommands other than `serve` (which reads
/// them with its other settings, the config file included).
#[derive(Debug, Clone, Default)]
pub struct LogArgs {
    given: CommandLine,
}

impl LogArgs {
    /// The logging settings: flag, then variable, then `RUST_LOG` (for
    /// the filter), then default.
    ///
    /// # Errors
    /// A value that is not valid.
    pub fn settings(&self, env: &impl Environment) -> Result<LogSettings, SettingsError> {
        let mut draft = Draft::from_environment(env);
        for setting in LOGGING {
            self.given.apply(setting, &mut draft)?;
        }
        Ok(draft.log)
    }
}

impl Args for LogArgs {
    fn augment_args(command: Command) -> Command {
        CommandLine::augment(command, &LOGGING)
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for LogArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Self {
            given: CommandLine::read(matches, &LOGGING),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.given.update(CommandLine::read(matches, &LOGGING));
        Ok(())
    }
}
