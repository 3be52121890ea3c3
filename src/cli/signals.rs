//! Ctrl-C and SIGTERM for the long-running commands (`sync`, `reconcile`, `alerts`,
//! `record --batch`): the first signal asks the command to stop at its next safe point, a
//! second one ends the process at once.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::{Error, Result};

/// SIGINT and SIGTERM (Ctrl-C, a cron timeout, `systemctl stop`) set the returned flag: the
/// command stops the way the dashboard's Esc stops a sync (nothing new is started; what is in
/// flight finishes and is recorded). A second signal ends the process at once.
pub(super) fn cancel_on_signals() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let cancel = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&cancel))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&cancel)))
            .map_err(|e| Error::Stripe(format!("cannot handle signals: {e}")))?;
    }
    Ok(cancel)
}
