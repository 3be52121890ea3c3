//! Every meter, side by side: what a record batch adds to its counters (`counting`), its
//! standing for `check`, `history`, a duplicate's answer and the rest (`standing`), where it
//! goes in Stripe (`stripe`), and the dashboard's reads of it (`dashboard`).

pub(crate) mod counting;
pub(crate) mod dashboard;
pub(crate) mod standing;
pub(crate) mod stripe;
