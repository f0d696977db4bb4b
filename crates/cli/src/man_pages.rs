//! `tokencache man`: manual pages generated from the clap definition, one
//! per command (`tokencache.1`, `tokencache-serve.1`, …), so they say what
//! `--help` says.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory as _;

use crate::cli::Cli;

/// Writes `tokencache.1` to `out`.
///
/// # Errors
/// When `out` cannot be written.
pub fn write_main(out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(Cli::command()).render(out)?;
    out.flush()
}

/// Writes every page into `dir` (which must exist).
///
/// # Errors
/// When a page cannot be written.
pub fn write_all(dir: &Path) -> std::io::Result<()> {
    // clap_mangen names each variable, never its value: the pages say
    // nothing of the environment of whoever generated them.
    clap_mangen::generate_to(Cli::command(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_page_lists_the_subcommands() {
        let mut out = Vec::new();
        write_main(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains(".TH tokencache 1"), "roff: {page}");
        for word in ["tokencache", "serve", "completions"] {
            assert!(page.contains(word), "no {word}: {page}");
        }
    }

    #[test]
    fn each_command_has_a_page_that_names_its_variables() {
        let dir = std::env::temp_dir().join(format!("tokencache-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_all(&dir).unwrap();
        let serve = std::fs::read_to_string(dir.join("tokencache-serve.1")).unwrap();
        assert!(serve.contains("TOKENCACHE_ADMIN_LISTEN"), "{serve}");
        for page in [
            "tokencache.1",
            "tokencache-demo.1",
            "tokencache-store-init.1",
        ] {
            assert!(dir.join(page).is_file(), "{page}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
