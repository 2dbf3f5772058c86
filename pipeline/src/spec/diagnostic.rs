//! Validation findings that point at `file:line:col` and say how to fix them.

use super::located::Position;

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where (0:0 when the position is unknown).
    pub at: Position,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A finding at `at`.
    pub fn new(at: Position, message: impl Into<String>) -> Self {
        Diagnostic {
            at,
            message: message.into(),
            help: None,
        }
    }
    /// Adds the fix.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one file. Validation does not stop at the first,
/// so a user fixes a file in one round.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics {
    /// The file as the user named it.
    pub source_name: String,
    /// Findings sorted by position.
    pub items: Vec<Diagnostic>,
}

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if d.at.line == 0 {
                write!(f, "{}: error: {}", self.source_name, d.message)?;
            } else {
                write!(f, "{}:{}: error: {}", self.source_name, d.at, d.message)?;
            }
            if let Some(help) = &d.help {
                write!(f, "\n  help: {help}")?;
            }
        }
        Ok(())
    }
}
