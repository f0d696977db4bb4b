//! `tokencache completions SHELL`: a completion script generated from the
//! clap definition, so it never lags behind the flags.

use std::io::Write;

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes the completion script for `shell` to `out`.
///
/// # Errors
/// When `out` cannot be written.
pub fn write(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = Cli::command();
    let name = command.get_name().to_owned();
    // clap_complete panics on a failed write (a closed pipe); into memory
    // it cannot fail, and the real write reports its error.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    out.write_all(&script)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_that_knows_the_subcommands_and_serves_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            write(shell, &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            for word in ["tokencache", "serve", "completions", "admin-listen"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }
}
