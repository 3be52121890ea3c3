//! Checks answered together, on PostgreSQL: one thread with its own connection takes every
//! check waiting and answers them with one statement (`Store::metered_checks`), so a check
//! costs a share of one round trip, not a round trip of its own (each a wake-up of the server
//! and of this process, which a busy machine schedules late). A round's statement starts after
//! each of its checks arrived, so every answer counts every write acknowledged before its
//! request was sent. SQLite, in the process, has nothing to save and keeps its parallel
//! reader threads (`crate::read`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use tokio::sync::oneshot;

use super::error::ApiError;
use crate::clock::Clock;
use crate::store::OpenOptions;
use crate::{Config, Store};
use meterline_core::MeteredCheck;

type Answer = Result<MeteredCheck, ApiError>;

/// One check waiting for a round.
struct Ask {
    customer: String,
    reply: oneshot::Sender<Answer>,
}

/// The most checks one round answers; the rest wait for the next.
const MAX_ROUND: usize = 512;

/// The handle the handlers share; the thread stops when the last one is dropped.
pub(crate) struct Checks {
    tx: Sender<Ask>,
}

impl Checks {
    /// Start the checking thread on `db`. Waiting checks are bounded by the connections.
    pub(crate) fn start(db: PathBuf, config: Arc<Config>, clock: Clock) -> crate::Result<Checks> {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("meterline-checks".into())
            .spawn(move || run(&db, &config, clock, &rx))
            .map_err(|e| crate::Error::Database(format!("cannot start the check thread: {e}")))?;
        Ok(Checks { tx })
    }

    /// `customer`'s check, answered with the other checks of its round.
    pub(crate) async fn check(&self, customer: String) -> Answer {
        let (reply, answer) = oneshot::channel();
        let stopped = || ApiError::unavailable("shutting_down", "the server is shutting down");
        self.tx
            .send(Ask { customer, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn run(db: &Path, config: &Config, clock: Clock, rx: &Receiver<Ask>) {
    let mut store: Option<Store> = None;
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        while round.len() < MAX_ROUND {
            match rx.try_recv() {
                Ok(ask) => round.push(ask),
                Err(_) => break,
            }
        }
        let ids: Vec<&str> = round.iter().map(|a| a.customer.as_str()).collect();
        // Opened again after a failed round: the server may have restarted.
        let opened = store
            .take()
            .map_or_else(|| Store::open_with(db, OpenOptions::existing()), Ok);
        let answers = opened.and_then(|opened| {
            let answers = opened.metered_checks(config, &ids, clock.now())?;
            store = Some(opened);
            Ok(answers)
        });
        match answers {
            Ok(answers) => {
                let answers: HashMap<String, Answer> = answers
                    .into_iter()
                    .map(|(id, a)| (id, a.map_err(ApiError::from)))
                    .collect();
                for ask in round {
                    let answer = answers.get(&ask.customer).cloned().unwrap_or_else(|| {
                        Err(ApiError::from(crate::Error::UnknownCustomer(
                            ask.customer.clone(),
                        )))
                    });
                    let _ = ask.reply.send(answer);
                }
            }
            Err(e) => {
                let e = ApiError::from(e);
                for ask in round {
                    let _ = ask.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
