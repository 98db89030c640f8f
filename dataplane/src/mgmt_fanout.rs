//! Management requests fanned out to every worker and handed back: the one
//! mechanism behind the router's and the vCPE's management APIs (`vnf_router::mgmt`,
//! `vcpe::mgmt`), generic over the VNF's request type.
//!
//! ```text
//!   management thread                        worker k (between two bursts)
//!   send(links, make, timeout) ──to_worker[k]──> hook: apply(graph, request)
//!          <───────────────────────done[k]────── (the request, holding what the
//!                                                 stages gave up or reported)
//! ```
//!
//! Each worker has its own [`Link`]: two bounded lock-free queues (crossbeam
//! `ArrayQueue`, [`QUEUE`] entries, allocated at start-up), one to the worker and one
//! back. A request is built off the data path (new tables, a rule set, an empty
//! report with its capacity reserved), handed to the worker, applied by the
//! worker's update hook ([`hook`], run by [`crate::worker::Worker::poll`] between
//! bursts) and handed back with whatever the stages gave up (the old tables) or
//! filled in (counters), so that it is read and freed on the management side, never
//! on the worker: the worker takes no lock and allocates or frees nothing.
//!
//! The management side ([`send`], std) gives one request (made once per worker) to
//! every worker, then waits until each has handed its request back, or until a
//! time-out shared by all of them:
//! - a worker that is stopped or stuck is waited for no longer than the time-out;
//!   its request stays queued (it applies it if it ever polls again), and whatever it
//!   hands back late is discarded by a later [`send`]: every request carries the
//!   link's sequence number, and [`send`] takes as an answer only the request it
//!   gave, so a late answer to an earlier request that arrives while a later one is
//!   waited for is never mistaken for it;
//! - a worker whose queue is full (stopped for [`QUEUE`] requests) does not get the
//!   request, which is freed at once on the management side and not waited for;
//! - a worker for which `make` returns `None` gets nothing;
//! - the answer holds what came back, one request per worker that answered in time,
//!   in worker order; fewer than the workers means some did not take it.
//!
//! For messages that are only sent, never handed back (and may be cloned), see
//! [`crate::worker::Fanout`].

use crate::batch::Out;
use crate::graph::Graph;
use crate::worker::Hook;
use alloc::boxed::Box;
use alloc::sync::Arc;
#[cfg(feature = "std")]
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use crossbeam_queue::ArrayQueue;
#[cfg(feature = "std")]
use std::time::{Duration, Instant};

/// Requests a link holds in each direction: the management side waits for each
/// request, so one is in flight unless a worker stopped.
pub const QUEUE: usize = 4;

/// How often [`send`] looks for the workers' answers while it waits.
#[cfg(feature = "std")]
const POLL: Duration = Duration::from_micros(200);

/// The queues between the management side and one worker's update hook; each
/// request travels with its sequence number on this link.
pub struct Link<T> {
    to_worker: Arc<ArrayQueue<(u64, T)>>,
    done: Arc<ArrayQueue<(u64, T)>>,
    /// The sequence number of the next request queued on this link.
    seq: Arc<AtomicU64>,
}

impl<T> Clone for Link<T> {
    fn clone(&self) -> Self {
        Link {
            to_worker: self.to_worker.clone(),
            done: self.done.clone(),
            seq: self.seq.clone(),
        }
    }
}

impl<T> Default for Link<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Link<T> {
    /// A link of [`QUEUE`] entries each way (fixed-size lock-free queues, allocated
    /// here).
    pub fn new() -> Link<T> {
        Link {
            to_worker: Arc::new(ArrayQueue::new(QUEUE)),
            done: Arc::new(ArrayQueue::new(QUEUE)),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues `u` for the worker (back when the queue is full).
    pub fn push(&self, u: T) -> Result<(), T> {
        self.push_seq(u).map(|_| ())
    }

    /// Queues `u` under the link's next sequence number and returns that number (`u`
    /// back when the queue is full; the number is then not used).
    fn push_seq(&self, u: T) -> Result<u64, T> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.to_worker.push((n, u)).map(|()| n).map_err(|(_, u)| u)
    }

    /// What the worker handed back, oldest first.
    pub fn pop_done(&self) -> Option<T> {
        self.done.pop().map(|(_, u)| u)
    }

    /// The worker's side: takes every queued request, applies `apply` to it and
    /// hands the result back; returns how many it took. Allocates and locks
    /// nothing. Were the queue back full (it has room for every request in flight:
    /// the management side empties it before each request), the result would be
    /// freed here.
    pub fn serve(&self, mut apply: impl FnMut(T) -> T) -> usize {
        // Called on every loop and nearly always idle: two loads, where `pop` on
        // an empty queue also issues a full fence.
        if self.to_worker.is_empty() {
            return 0;
        }
        let mut n = 0;
        while let Some((seq, u)) = self.to_worker.pop() {
            let _ = self.done.push((seq, apply(u)));
            n += 1;
        }
        n
    }
}

/// The update hook of `link` for a worker (`WorkerSpec::hooks`,
/// [`crate::worker::Worker::on_update`]): between bursts it applies the queued
/// requests to the worker's graph with `apply` and hands each back
/// ([`Link::serve`]).
pub fn hook<T, F>(link: &Link<T>, mut apply: F) -> Hook
where
    T: Send + 'static,
    F: FnMut(&mut Graph, &mut Out, T) -> T + Send + 'static,
{
    let link = link.clone();
    Box::new(move |g, out| {
        link.serve(|u| apply(g, out, u));
    })
}

/// Gives one request, made by `make` (called once per worker, in order), to every
/// worker of `links` and waits until each has handed it back, or `timeout` after
/// the start for all of them; returns what came back, in worker order (see the
/// module's documentation for a stopped worker or a full queue).
#[cfg(feature = "std")]
pub fn send<T>(
    links: &[Link<T>],
    mut make: impl FnMut() -> Option<T>,
    timeout: Duration,
) -> Vec<T> {
    let mut pending = Vec::new();
    for l in links {
        // Earlier requests a slow worker handed back late.
        while l.done.pop().is_some() {}
        if let Some(u) = make() {
            // A full queue: the request is freed here, not waited for.
            if let Ok(seq) = l.push_seq(u) {
                pending.push((l, seq));
            }
        }
    }
    let t = Instant::now();
    let mut back = Vec::new();
    for (l, seq) in pending {
        loop {
            match l.done.pop() {
                Some((s, u)) if s == seq => {
                    back.push(u);
                    break;
                }
                // A late answer to an earlier request: freed here.
                Some(_) => continue,
                None => {}
            }
            if t.elapsed() >= timeout {
                break;
            }
            std::thread::sleep(POLL);
        }
    }
    back
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::buf::Pool;
    use crate::port::mem;
    use crate::worker::{Worker, WorkerConfig};
    use alloc::format;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread::JoinHandle;

    /// A request: which round it belongs to, which worker applied it (set by the
    /// worker), and a drop counter to see where it is freed.
    struct Req {
        round: u32,
        by: Option<usize>,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for Req {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Worker `k` polling on its own thread with [`hook`] of `link` until `stop`.
    fn worker(
        k: usize,
        link: &Link<Req>,
        stop: &Arc<AtomicBool>,
        pool: &'static Pool,
    ) -> JoinHandle<()> {
        let (a, _peer) = mem::pair(&format!("mf-w{k}"), &format!("mf-p{k}"), 64).unwrap();
        let mut w = Worker::new(
            alloc::vec![a],
            Graph::new(),
            pool.cache(),
            WorkerConfig::default(),
        )
        .unwrap()
        .on_update(hook(link, move |_g, _out, mut r: Req| {
            r.by = Some(k);
            r
        }));
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut now = 0;
            while !stop.load(Ordering::Relaxed) {
                now += 1000;
                w.poll(now);
                std::thread::yield_now();
            }
        })
    }

    fn req(round: u32, drops: &Arc<AtomicUsize>) -> Req {
        Req {
            round,
            by: None,
            drops: drops.clone(),
        }
    }

    #[test]
    fn every_worker_applies_the_request_and_hands_it_back_in_order() {
        let pool = Pool::new(256).unwrap();
        let links: Vec<Link<Req>> = (0..4).map(|_| Link::new()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let ws: Vec<_> = (0..4).map(|k| worker(k, &links[k], &stop, pool)).collect();
        let drops = Arc::new(AtomicUsize::new(0));
        for round in 0..20 {
            let mut made = 0;
            let back = send(
                &links,
                || {
                    made += 1;
                    Some(req(round, &drops))
                },
                Duration::from_secs(10),
            );
            assert_eq!(made, 4, "one request made per worker");
            let by: Vec<_> = back.iter().map(|r| (r.round, r.by)).collect();
            assert_eq!(
                by,
                (0..4).map(|k| (round, Some(k))).collect::<Vec<_>>(),
                "every worker applied this round's request, answers in worker order"
            );
        }
        stop.store(true, Ordering::Relaxed);
        for w in ws {
            w.join().unwrap();
        }
        // Every request came back to be freed here (the hook freed none).
        assert_eq!(drops.load(Ordering::Relaxed), 80);
    }

    #[test]
    fn a_worker_skipped_by_make_gets_nothing() {
        let pool = Pool::new(256).unwrap();
        let links: Vec<Link<Req>> = (0..3).map(|_| Link::new()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let ws: Vec<_> = (0..3)
            .map(|k| worker(10 + k, &links[k], &stop, pool))
            .collect();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut k = 0;
        let t = Instant::now();
        let back = send(
            &links,
            || {
                k += 1;
                (k != 2).then(|| req(0, &drops))
            },
            Duration::from_secs(10),
        );
        assert!(t.elapsed() < Duration::from_secs(5), "nobody waited for");
        let by: Vec<_> = back.iter().map(|r| r.by).collect();
        assert_eq!(by, [Some(10), Some(12)]);
        stop.store(true, Ordering::Relaxed);
        for w in ws {
            w.join().unwrap();
        }
    }

    #[test]
    fn a_stopped_worker_is_waited_for_until_the_time_out_and_its_late_answer_is_discarded() {
        let pool = Pool::new(256).unwrap();
        let links: Vec<Link<Req>> = (0..2).map(|_| Link::new()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        // Worker 0 runs; worker 1 is stopped: nobody serves its link for now.
        let w0 = worker(20, &links[0], &stop, pool);
        let drops = Arc::new(AtomicUsize::new(0));
        let timeout = Duration::from_millis(100);
        let t = Instant::now();
        let back = send(&links, || Some(req(1, &drops)), timeout);
        assert!(t.elapsed() >= timeout, "waited for the stopped worker");
        assert!(t.elapsed() < Duration::from_secs(5));
        let by: Vec<_> = back.iter().map(|r| (r.round, r.by)).collect();
        assert_eq!(by, [(1, Some(20))], "only the running worker answered");
        drop(back);
        // Its request stays queued: the worker applies it once it runs again.
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        let late = links[1].serve(|mut r| {
            r.by = Some(21);
            r
        });
        assert_eq!(late, 1, "the stopped worker's request waited in its queue");
        // Worker 1 runs from now on; the next round discards the late answer of round 1.
        let w1 = worker(21, &links[1], &stop, pool);
        let back = send(&links, || Some(req(2, &drops)), Duration::from_secs(10));
        let by: Vec<_> = back.iter().map(|r| (r.round, r.by)).collect();
        assert_eq!(by, [(2, Some(20)), (2, Some(21))]);
        drop(back);
        assert_eq!(drops.load(Ordering::Relaxed), 4, "every request was freed");
        stop.store(true, Ordering::Relaxed);
        w0.join().unwrap();
        w1.join().unwrap();
    }

    #[test]
    fn a_late_answer_arriving_during_the_next_request_is_not_taken_for_it() {
        let links: Vec<Link<Req>> = alloc::vec![Link::new()];
        let drops = Arc::new(AtomicUsize::new(0));
        // Round 1: the worker is stopped, its request stays queued.
        assert!(send(&links, || Some(req(1, &drops)), Duration::from_millis(20)).is_empty());
        // Round 2: the worker wakes up while round 2 is waited for and hands back
        // both requests, round 1's first.
        let link = links[0].clone();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            link.serve(|mut r| {
                r.by = Some(7);
                r
            })
        });
        let back = send(&links, || Some(req(2, &drops)), Duration::from_secs(10));
        assert_eq!(late.join().unwrap(), 2, "both requests were applied");
        let by: Vec<_> = back.iter().map(|r| (r.round, r.by)).collect();
        assert_eq!(by, [(2, Some(7))], "round 2's answer is round 2's request");
        drop(back);
        assert_eq!(
            drops.load(Ordering::Relaxed),
            2,
            "the late answer was freed"
        );
    }

    #[test]
    fn a_full_queue_frees_the_request_without_waiting() {
        let links: Vec<Link<Req>> = alloc::vec![Link::new()];
        let drops = Arc::new(AtomicUsize::new(0));
        let timeout = Duration::from_millis(20);
        // A stopped worker: each request waits out the time-out and stays queued.
        for round in 0..QUEUE as u32 {
            let t = Instant::now();
            assert!(send(&links, || Some(req(round, &drops)), timeout).is_empty());
            assert!(t.elapsed() >= timeout);
        }
        assert_eq!(drops.load(Ordering::Relaxed), 0, "all queued");
        // The queue is full: the next request is freed at once, nobody waits.
        let t = Instant::now();
        let back = send(&links, || Some(req(99, &drops)), Duration::from_secs(10));
        assert!(back.is_empty());
        assert!(t.elapsed() < Duration::from_secs(5), "not waited for");
        assert_eq!(
            drops.load(Ordering::Relaxed),
            1,
            "the refused request was freed"
        );
        // The worker, once it runs, applies the queued ones in order.
        let mut rounds = alloc::vec::Vec::new();
        assert_eq!(
            links[0].serve(|r| {
                rounds.push(r.round);
                r
            }),
            QUEUE
        );
        assert_eq!(rounds, (0..QUEUE as u32).collect::<Vec<_>>());
        let mut back = 0;
        while links[0].pop_done().is_some() {
            back += 1;
        }
        assert_eq!(back, QUEUE, "each handed back");
        assert_eq!(drops.load(Ordering::Relaxed), 1 + QUEUE);
    }

    #[test]
    fn no_workers_no_requests() {
        let links: Vec<Link<Req>> = Vec::new();
        let mut made = 0;
        let back = send(
            &links,
            || {
                made += 1;
                None
            },
            Duration::from_secs(1),
        );
        assert!(back.is_empty());
        assert_eq!(made, 0);
    }
}
