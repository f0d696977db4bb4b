//! The README's configuration table against the declarations: every
//! setting has a row with its flag, variable, file key and default, and
//! every row is a setting.

use std::collections::HashMap;

use crate::settings::declarations::SERVE;
use crate::settings::draft::Draft;
use crate::settings::setting::{Declared, Shown};

const README: &str = include_str!("../../../../README.md");
const HEADER: &str = "| flag | variable | file key | default | what |";

/// The cells of each row of the table under "## Configuration", by flag.
fn table() -> HashMap<String, Vec<String>> {
    let section = README
        .split("\n## ")
        .find(|section| section.starts_with("Configuration\n"))
        .expect("README has a ## Configuration section");
    let mut lines = section
        .lines()
        .skip_while(|line| line.trim() != HEADER)
        .skip(2); // the header and its rule
    let mut rows = HashMap::new();
    for line in lines.by_ref().take_while(|line| line.starts_with('|')) {
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split(" | ")
            .map(|cell| cell.trim().to_owned())
            .collect();
        assert_eq!(cells.len(), 5, "a row of five cells: {line}");
        let previous = rows.insert(cells[0].clone(), cells);
        assert!(previous.is_none(), "two rows for one flag: {line}");
    }
    assert!(!rows.is_empty(), "README: no table headed `{HEADER}`");
    rows
}

/// The row the README should have for a setting (its last cell, the
/// explanation, is the README's own).
fn expected(setting: &dyn Declared, defaults: &Draft) -> [String; 4] {
    let default = match setting.default_shown(defaults) {
        Shown::Value(value) => format!("`{value}`"),
        Shown::Unset(meaning) => meaning.to_owned(),
    };
    [
        format!("`--{}`", setting.name()),
        format!("`{}`", setting.env()),
        setting.file().to_string(),
        default,
    ]
}

#[test]
fn the_readme_table_matches_the_declarations() {
    let defaults = Draft::default();
    let mut rows = table();
    let mut wrong = Vec::new();
    for setting in SERVE {
        let expected = expected(setting, &defaults);
        let shown = format!("| {} | … |", expected.join(" | "));
        match rows.remove(&expected[0]) {
            None => wrong.push(format!("missing: {shown}")),
            Some(row) => {
                // A variable may be followed by another that also works.
                let variable_matches =
                    row[1] == expected[1] || row[1].starts_with(&format!("{} (or ", expected[1]));
                if !variable_matches || row[2..4] != expected[2..] {
                    wrong.push(format!(
                        "differs: {}\n  should be: {shown}",
                        row.join(" | ")
                    ));
                }
                if row[4].is_empty() {
                    wrong.push(format!("no explanation: {}", expected[0]));
                }
            }
        }
    }
    for flag in rows.keys() {
        wrong.push(format!("no such setting: {flag}"));
    }
    assert!(
        wrong.is_empty(),
        "README.md's configuration table and the declarations in \
         crates/cli/src/settings/declarations.rs disagree:\n{}",
        wrong.join("\n")
    );
}
