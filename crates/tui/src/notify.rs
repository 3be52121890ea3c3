//! How the dashboard's worker threads report: each sends its own message type through a
//! `Notify`, and the event loop decides how those reach it (tui/event.rs wraps them in its
//! `Event`). The workers know nothing of the loop, so the modules form no cycle.

use std::sync::mpsc::Sender;

/// A place to send `T`; `false` once nobody listens any more (the dashboard is quitting).
pub trait Notify<T>: Send + 'static {
    fn notify(&self, message: T) -> bool;
}

/// A channel of exactly the worker's messages (tests, or a loop of one worker).
impl<T: Send + 'static> Notify<T> for Sender<T> {
    fn notify(&self, message: T) -> bool {
        self.send(message).is_ok()
    }
}
