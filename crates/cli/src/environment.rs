//! Reading environment variables through a small trait, so tests pass a map
//! instead of touching the process environment.

use std::collections::HashMap;

/// Reads environment variables.
pub trait Environment {
    /// The variable's value, if set and Unicode.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}
