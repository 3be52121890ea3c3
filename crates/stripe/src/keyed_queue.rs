//! A queue of jobs keyed by what they must not overlap on (for the sync: Stripe customer ×
//! meter, which Stripe allows one request in flight at a time): jobs come out in the order
//! they went in, except that a key's next job waits until its job out is released, without
//! holding up other keys. No locking of its own: the pipeline keeps it under its board's mutex.

use std::collections::{HashMap, HashSet, VecDeque};

/// Jobs in the order pushed, released so that at most one per key is out at a time; later jobs
/// of a busy key wait, in order, without holding up other keys.
pub(crate) struct KeyedQueue<K, T> {
    ready: VecDeque<(K, T)>,
    waiting: HashMap<K, VecDeque<T>>,
    /// Keys with a job ready or out.
    claimed: HashSet<K>,
    queued: usize,
}

impl<K: std::hash::Hash + Eq + Clone, T> KeyedQueue<K, T> {
    pub(crate) fn new() -> Self {
        KeyedQueue {
            ready: VecDeque::new(),
            waiting: HashMap::new(),
            claimed: HashSet::new(),
            queued: 0,
        }
    }

    /// Queue `item`: ready at once if its key has nothing ready or out, else waiting behind.
    pub(crate) fn push(&mut self, key: K, item: T) {
        self.queued += 1;
        if self.claimed.contains(&key) {
            self.waiting.entry(key).or_default().push_back(item);
        } else {
            self.claimed.insert(key.clone());
            self.ready.push_back((key, item));
        }
    }

    /// Take the oldest ready job; its key counts as out until [`KeyedQueue::release`].
    pub(crate) fn pop_ready(&mut self) -> Option<T> {
        let (_, item) = self.ready.pop_front()?;
        self.queued -= 1;
        Some(item)
    }

    /// The job of `key` that was out has finished: its next one becomes ready.
    pub(crate) fn release(&mut self, key: &K) {
        let next = self.waiting.get_mut(key).and_then(|q| q.pop_front());
        match next {
            Some(item) => {
                if self.waiting.get(key).is_some_and(|q| q.is_empty()) {
                    self.waiting.remove(key);
                }
                self.ready.push_back((key.clone(), item));
            }
            None => {
                self.claimed.remove(key);
            }
        }
    }

    /// Jobs queued, ready or waiting (not those out).
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    /// Every job still queued, ready or waiting.
    pub(crate) fn into_items(self) -> Vec<T> {
        let mut items: Vec<T> = self.ready.into_iter().map(|(_, item)| item).collect();
        items.extend(self.waiting.into_values().flatten());
        items
    }

    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.claimed.is_empty() && self.waiting.is_empty() && self.ready.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_per_key_is_out_and_order_is_kept() {
        let mut q = KeyedQueue::new();
        q.push("a", 1);
        q.push("a", 2);
        q.push("b", 3);
        q.push("a", 4);
        assert_eq!(q.len(), 4);
        assert_eq!(q.pop_ready(), Some(1));
        assert_eq!(q.pop_ready(), Some(3));
        // a's next job waits until 1 is done.
        assert_eq!(q.pop_ready(), None);
        q.release(&"a");
        assert_eq!(q.pop_ready(), Some(2));
        q.release(&"b");
        q.release(&"a");
        assert_eq!(q.pop_ready(), Some(4));
        q.release(&"a");
        assert_eq!(q.len(), 0);
        assert!(q.is_idle());
    }
}
