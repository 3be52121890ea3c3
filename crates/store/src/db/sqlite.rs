//! The SQLite side of [`super::Connection`]: rusqlite takes the parameters as they are.

use super::Param;

/// The parameters in the form rusqlite binds.
pub(super) fn bind<'a>(params: &'a [&'a dyn Param]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(params.iter().copied())
}
