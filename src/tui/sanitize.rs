//! The sanitiser moved to [`crate::sanitize`] (the CLI uses it too); kept here for `tui` paths.

pub use crate::sanitize::sanitize;
