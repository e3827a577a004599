//! The bounded job queue between submitters and I/O threads. Full is back-pressure: a
//! blocking push waits, an all-or-nothing push gives the items back.

use std::collections::VecDeque;

use crate::sync::{self, Condvar, Mutex};

#[derive(Debug)]
struct State<T> {
    jobs: VecDeque<T>,
    closed: bool,
}

/// A bounded multi-producer multi-consumer queue (a Mutex and two Condvars, so it is
/// also what loom sees).
#[derive(Debug)]
pub(crate) struct JobQueue<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
}

impl<T> JobQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State { jobs: VecDeque::new(), closed: false }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Pushes `job`, blocking while the queue is full.
    ///
    /// # Errors
    /// The job back when the queue is closed.
    pub(crate) fn push(&self, job: T) -> Result<(), T> {
        let mut st = sync::lock(&self.state);
        loop {
            if st.closed {
                return Err(job);
            }
            if st.jobs.len() < self.capacity {
                st.jobs.push_back(job);
                drop(st);
                self.not_empty.notify_one();
                return Ok(());
            }
            st = sync::wait(&self.not_full, st);
        }
    }

    /// Pushes all of `jobs` or none. Takes them when they fit, or when the queue is empty
    /// (so a batch larger than the whole queue is not refused forever; the bound is then
    /// exceeded once, by that batch).
    ///
    /// # Errors
    /// The jobs back, untouched, when the queue is full or closed.
    pub(crate) fn try_push_all(&self, jobs: Vec<T>) -> Result<(), Vec<T>> {
        let mut st = sync::lock(&self.state);
        let fits = st.jobs.len().saturating_add(jobs.len()) <= self.capacity || st.jobs.is_empty();
        if st.closed || !fits {
            return Err(jobs);
        }
        let n = jobs.len();
        st.jobs.extend(jobs);
        drop(st);
        if n == 1 {
            self.not_empty.notify_one();
        } else if n > 1 {
            self.not_empty.notify_all();
        }
        Ok(())
    }

    /// Takes the oldest job, blocking while empty; `None` once closed.
    pub(crate) fn pop(&self) -> Option<T> {
        let mut st = sync::lock(&self.state);
        loop {
            if st.closed {
                return None;
            }
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                self.not_full.notify_one();
                return Some(job);
            }
            st = sync::wait(&self.not_empty, st);
        }
    }

    /// Closes the queue and returns the jobs nobody started; wakes every waiter.
    pub(crate) fn close(&self) -> Vec<T> {
        let mut st = sync::lock(&self.state);
        st.closed = true;
        let left = st.jobs.drain(..).collect();
        drop(st);
        self.not_empty.notify_all();
        self.not_full.notify_all();
        left
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod tests {
    use super::*;

    #[test]
    fn full_queue_gives_items_back_and_empty_queue_takes_an_oversized_batch() {
        let q = JobQueue::new(2);
        q.try_push_all(vec![1, 2]).unwrap();
        assert_eq!(q.try_push_all(vec![3]), Err(vec![3]));
        assert_eq!(q.pop(), Some(1));
        q.try_push_all(vec![3]).unwrap();
        assert_eq!(q.try_push_all(vec![4, 5]), Err(vec![4, 5]));
        assert_eq!(q.close(), vec![2, 3]);
        assert_eq!(q.pop(), None);
        assert_eq!(q.push(9), Err(9));
        let q = JobQueue::new(2);
        q.try_push_all(vec![1, 2, 3, 4]).unwrap();
        assert_eq!(q.close(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn blocking_push_waits_for_room() {
        let q = std::sync::Arc::new(JobQueue::new(1));
        q.push(1).unwrap();
        let q2 = q.clone();
        let h = std::thread::spawn(move || q2.push(2));
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!h.is_finished(), "push must block while full");
        assert_eq!(q.pop(), Some(1));
        h.join().unwrap().unwrap();
        assert_eq!(q.pop(), Some(2));
    }
}
