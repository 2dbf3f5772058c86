//! One module per subcommand.

pub mod progress;
pub mod run;
pub mod runs;
pub mod trigger;
pub mod validate;

/// Exit status for usage, source and pipeline errors.
pub const EXIT_USAGE: u8 = 2;
