//! One channel feeds the loop: key presses and resizes from the input thread, a tick for
//! time-based values, data from the database watcher, and sync reports.

use std::sync::mpsc::Sender;
use std::thread;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEvent, KeyEventKind};

use super::data::DataEvent;
use super::notify::Notify;
use super::sync_worker::SyncEvent;

#[derive(Debug)]
pub enum Event {
    Key(KeyEvent),
    Resize,
    Tick,
    Data(DataEvent),
    Sync(SyncEvent),
}

/// The watcher's and the sync worker's messages arrive on the loop's one channel.
impl Notify<DataEvent> for Sender<Event> {
    fn notify(&self, message: DataEvent) -> bool {
        self.send(Event::Data(message)).is_ok()
    }
}

impl Notify<SyncEvent> for Sender<Event> {
    fn notify(&self, message: SyncEvent) -> bool {
        self.send(Event::Sync(message)).is_ok()
    }
}

/// Read terminal input forever; ends when the loop has gone.
pub(crate) fn spawn_input(tx: Sender<Event>) {
    thread::spawn(move || {
        loop {
            let event = match event::read() {
                Ok(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => Event::Key(key),
                Ok(TermEvent::Resize(..)) => Event::Resize,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(event).is_err() {
                return;
            }
        }
    });
}

/// A tick every `every`, for the clock and days left.
pub(crate) fn spawn_ticker(tx: Sender<Event>, every: Duration) {
    thread::spawn(move || {
        loop {
            thread::sleep(every);
            if tx.send(Event::Tick).is_err() {
                return;
            }
        }
    });
}
