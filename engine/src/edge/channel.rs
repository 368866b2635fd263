//! The inbox: ports with credit, one lock, two condition variables.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::{RecvError, SendError, TryRecvError, TrySendError};
use super::port::{Dropped, Offer, Port, PortConfig};
use crate::batch::Batch;
use crate::metrics::{TaskState, TaskStats};
use crate::policy::{EdgePolicy, REASONS};
use crate::priority::CLASSES;
use crate::rows::Rows;
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Creates an inbox with one port of `capacity` records and returns a sender to that port
/// and the receiver. More ports are added with [`Receiver::add_port`], more senders to a port
/// with [`Sender::clone`].
///
/// # Panics
/// Panics if `capacity` is zero; the graph builder reports a zero capacity as a typed error
/// before it creates any edge.
///
/// # Examples
/// ```
/// use sluice_engine::{edge, Batch};
/// let (tx, rx) = edge::bounded::<u32>(4);
/// tx.send(Batch::new(vec![1, 2, 3])).unwrap();
/// drop(tx); // end of stream, in band after the queued batch
/// assert_eq!(rx.recv().unwrap().records, vec![1, 2, 3]);
/// assert_eq!(rx.recv().unwrap_err(), edge::RecvError::Closed);
/// ```
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let rx = Receiver::new();
    let tx = rx.add_port(capacity, EdgePolicy::Block);
    (tx, rx)
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// The receiver waits here for data.
    data_ready: Condvar,
    /// Senders wait here for credit.
    credit_ready: Condvar,
}

struct State<T> {
    ports: Vec<Port<T>>,
    /// Round-robin cursor over ports, for fairness between inputs.
    cursor: usize,
    receiver_waiting: bool,
    senders_waiting: usize,
    receiver_alive: bool,
    aborted: bool,
    /// Set when the job is stopping: deferred records stay in their logs for the next run.
    no_replay: bool,
    /// Queued batches are merged up to this many records when taken (1: never).
    coalesce: usize,
    /// Some port is served by class: the receiver takes from the port whose highest queued
    /// class is highest (round-robin between equals) rather than round-robin.
    by_class: bool,
}

/// Most records a replayed batch holds.
const REPLAY_BATCH: usize = 1024;

/// A point-in-time view of one port's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PortSnapshot {
    /// Capacity in records (credits).
    pub capacity: usize,
    /// Credits not reserved by a queued batch.
    pub available: usize,
    /// Credits held by queued batches (`available + in_flight_credit == capacity`).
    pub in_flight_credit: usize,
    /// Records queued now.
    pub queued_records: usize,
    /// Largest number of records ever queued at once.
    pub max_queued_records: usize,
    /// Records accepted by the port since it was created.
    pub sent_records: u64,
    /// Batches accepted by the port.
    pub sent_batches: u64,
    /// Records taken by the receiver.
    pub received_records: u64,
    /// Total time senders waited for credit, in nanoseconds.
    pub credit_wait_ns: u64,
    /// Sends that had to wait for credit.
    pub blocked_sends: u64,
    /// Senders still open.
    pub open_senders: usize,
    /// Records dropped by the port's policy, indexed `[reason][class]`
    /// (see [`DropReason::ALL`](crate::DropReason::ALL) and [`Priority`](crate::Priority)).
    pub drops: [[u64; CLASSES]; REASONS],
    /// Records written to the defer log in this run.
    pub deferred: u64,
    /// Records in the defer log now.
    pub deferred_pending: u64,
    /// Records read back from the defer log.
    pub replayed: u64,
    /// Records found in the defer log when the port opened (deferred by an earlier run).
    pub restored: u64,
    /// What the defer log's recovery found, and its I/O failures since.
    pub defer: super::DeferHealth,
    /// On a port sized in time: its receiver's measured drain rate, records per second
    /// (0 before the first estimate).
    pub drain_rate: Option<f64>,
    /// On a port bounded in bytes: the bytes per row its senders offer, smoothed (0 before
    /// the first batch).
    pub bytes_per_row: Option<f64>,
}

impl PortSnapshot {
    /// Records dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().flatten().sum()
    }
}

/// Back-off rounds before a sender or receiver parks (none under loom, whose models explore
/// the parking paths).
#[cfg(not(loom))]
const SPIN_STEPS: u32 = 10;
#[cfg(loom)]
const SPIN_STEPS: u32 = 0;

/// Spins for the first rounds, then yields the CPU (crossbeam's backoff shape).
fn backoff(step: u32) {
    if step < 6 {
        for _ in 0..(1u32 << step) {
            std::hint::spin_loop();
        }
    } else {
        std::thread::yield_now();
    }
}

/// Type-erased access to an inbox, for the runtime's metrics and abort.
pub trait EdgeProbe: Send + Sync {
    /// Counters of one port.
    fn port_snapshot(&self, port: usize) -> PortSnapshot;
    /// Wakes every waiter and makes every later send and receive fail with `Aborted`.
    fn abort(&self);
    /// Stops replaying deferred records: a stopping job leaves them in their logs.
    fn stop_replay(&self);
    /// Switches a port's overload policy (takes effect with the next send).
    fn set_policy(&self, port: usize, policy: EdgePolicy);
    /// Records queued on every port of the inbox.
    fn queued_records(&self) -> u64;
}

impl<T> Shared<T> {
    fn snapshot_port(&self, port: usize) -> PortSnapshot {
        let st = self.state.lock();
        st.ports.get(port).map(snapshot).unwrap_or_default()
    }

    fn set_port_policy(&self, port: usize, policy: EdgePolicy) {
        let mut st = self.state.lock();
        if let Some(p) = st.ports.get_mut(port) {
            p.policy = policy;
        }
        // Waiting senders re-evaluate under the new policy (it may drop instead of wait).
        let wake = st.senders_waiting > 0;
        drop(st);
        if wake {
            self.credit_ready.notify_all();
        }
    }

    fn no_replay(&self) {
        let mut st = self.state.lock();
        st.no_replay = true;
        // A receiver waiting for the replay of a closed port can now end.
        let wake = st.receiver_waiting;
        drop(st);
        if wake {
            self.data_ready.notify_all();
        }
    }

    fn abort_all(&self) {
        let mut st = self.state.lock();
        st.aborted = true;
        for p in &st.ports {
            p.fail_queued();
        }
        drop(st);
        self.data_ready.notify_all();
        self.credit_ready.notify_all();
    }
}

impl<T: Send + 'static> EdgeProbe for Shared<T> {
    fn port_snapshot(&self, port: usize) -> PortSnapshot {
        self.snapshot_port(port)
    }

    fn abort(&self) {
        self.abort_all()
    }

    fn stop_replay(&self) {
        self.no_replay()
    }

    fn set_policy(&self, port: usize, policy: EdgePolicy) {
        self.set_port_policy(port, policy)
    }

    fn queued_records(&self) -> u64 {
        let st = self.state.lock();
        st.ports.iter().map(|p| p.queued_records as u64).sum()
    }
}

fn snapshot<T>(p: &Port<T>) -> PortSnapshot {
    PortSnapshot {
        capacity: p.capacity,
        available: p.available,
        in_flight_credit: p.entries().map(|e| e.weight).sum(),
        queued_records: p.queued_records,
        max_queued_records: p.max_queued_records,
        sent_records: p.sent_records,
        sent_batches: p.sent_batches,
        received_records: p.received_records,
        credit_wait_ns: p.credit_wait_ns,
        blocked_sends: p.blocked_sends,
        open_senders: p.open_senders,
        drops: p.drops,
        deferred: p.deferred,
        deferred_pending: p.deferred_pending(),
        replayed: p.replayed,
        restored: p.spill.as_ref().map_or(p.restored_at_open, |s| s.restored),
        defer: p.defer_health(),
        drain_rate: p.drain_rate(),
        bytes_per_row: p.bytes_per_row(),
    }
}

/// Cuts `batch` (counted, sliceable items, more rows than `cap`) into a head that fits `cap`
/// and the rest: the whole items that fit, or, when even the first does not, its first
/// `cap` rows as a slice. Both parts keep the batch's creation instant and acks.
fn cut<T>(rows: Rows<T>, mut batch: Batch<T>, cap: usize) -> (Batch<T>, Batch<T>) {
    let cap = cap.max(1);
    let whole = rows.fitting(&batch.records, cap);
    let mut tail = batch.records.split_off(whole);
    if whole == 0 {
        if let Some(first) = tail.first() {
            let n = rows.of(first);
            match (
                rows.slice(first, 0, cap),
                rows.slice(first, cap, n.saturating_sub(cap)),
            ) {
                (Some(head), Some(rest)) => {
                    batch.records.push(head);
                    tail[0] = rest;
                }
                // Not sliceable after all: the item goes whole (clamped to the capacity).
                _ => batch.records.push(tail.remove(0)),
            }
        }
    }
    let tail = Batch {
        records: tail,
        created: batch.created,
        acks: batch.acks.clone(),
    };
    (batch, tail)
}

/// `batch` followed by `rest`, as one batch (an offer that ends early hands back the whole).
fn rejoin<T>(mut batch: Batch<T>, rest: Option<Batch<T>>) -> Batch<T> {
    if let Some(mut r) = rest {
        if batch.records.is_empty() {
            return r;
        }
        batch.records.append(&mut r.records);
        batch.created = batch.created.min(r.created);
        crate::ack::merge_acks(&mut batch.acks, &r.acks);
    }
    batch
}

/// The sending half of one port of an inbox.
///
/// Dropping (or [`close`](Sender::close)-ing) the last sender of a port ends that port's
/// stream, in band after the batches already queued.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
    port: usize,
    closed: bool,
    task: Option<std::sync::Arc<TaskStats>>,
    /// How the port counts items (records or rows).
    rows: Rows<T>,
    /// The port is bounded in bytes: tell it what each batch weighs.
    weigh: bool,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl<T> Sender<T> {
    /// Sends a batch, waiting for credit while the port is full.
    ///
    /// # Backpressure
    /// Under the default `Block` policy, blocks until the receiver has returned enough credit
    /// for the batch's weight (`min(len, capacity)`); the time waited is added to the port's
    /// `credit_wait_ns`. A batch of sliceable items ([`crate::slice_rows`]) larger than the
    /// capacity is sent in parts that each fit, in order. Other policies may drop part or all of the batch instead (counted
    /// in the port's `drops`), or wait only for the records they may not drop. Empty batches
    /// are accepted and discarded without taking credit.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if the receiver is gone, [`SendError::Aborted`] if the job
    /// is aborting. Both hand back what was not queued or dropped.
    pub fn send(&self, batch: Batch<T>) -> Result<(), SendError<T>> {
        match self.offer(batch, true) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(b)) => Err(SendError::Disconnected(b)),
            Err(TrySendError::Aborted(b)) | Err(TrySendError::Full(b)) => {
                Err(SendError::Aborted(b))
            }
        }
    }

    /// Sends a batch if the port has credit for it now.
    ///
    /// # Backpressure
    /// Never blocks: a full port returns [`TrySendError::Full`] with what the policy did not
    /// drop (under `Block`, the whole batch).
    ///
    /// # Errors
    /// `Full`, `Disconnected` or `Aborted`, each handing back the records not queued.
    pub fn try_send(&self, batch: Batch<T>) -> Result<(), TrySendError<T>> {
        self.offer(batch, false)
    }

    fn offer(&self, batch: Batch<T>, blocking: bool) -> Result<(), TrySendError<T>> {
        if batch.is_empty() {
            return Ok(());
        }
        // Weighed outside the lock: a byte hook may walk every column of every item.
        let weighed = self.weigh.then(|| {
            (
                self.rows.all(&batch.records),
                self.rows.bytes(&batch.records),
            )
        });
        let mut tapped: Vec<Dropped<T>> = Vec::new();
        let mut st = self.shared.state.lock();
        if let Some((rows, bytes)) = weighed {
            st.ports[self.port].observe_bytes(rows, bytes);
        }
        let mut batch = batch;
        // What is left of a batch larger than the port, cut off to be offered after `batch`.
        let mut rest: Option<Batch<T>> = None;
        let mut first = true;
        let mut classes = None;
        let mut waited_since: Option<Instant> = None;
        let mut spins = 0;
        let result = loop {
            if st.aborted {
                break Err(TrySendError::Aborted(rejoin(batch, rest.take())));
            }
            if !st.receiver_alive {
                break Err(TrySendError::Disconnected(rejoin(batch, rest.take())));
            }
            if self.rows.can_slice() && first {
                let cap = st.ports[self.port].capacity;
                if self.rows.all(&batch.records) > cap {
                    let (head, tail) = cut(self.rows, batch, cap);
                    batch = head;
                    rest = Some(rejoin(tail, rest.take()));
                    classes = None;
                }
            }
            match st.ports[self.port].offer(batch, &mut classes, first, &mut tapped) {
                Offer::Done => match rest.take() {
                    // The next part of a cut batch: offered at once, as a new batch.
                    Some(next) => {
                        // The receiver may be parked: it must see this part before the
                        // sender waits for credit for the next.
                        if st.receiver_waiting {
                            self.shared.data_ready.notify_one();
                        }
                        batch = next;
                        first = true;
                        classes = None;
                        continue;
                    }
                    None => break Ok(()),
                },
                Offer::Wait(left) => batch = left,
            }
            first = false;
            if !blocking {
                break Err(TrySendError::Full(rejoin(batch, rest.take())));
            }
            if waited_since.is_none() {
                waited_since = Some(Instant::now());
                st.ports[self.port].blocked_sends += 1;
                if let Some(t) = &self.task {
                    t.set_state(TaskState::WaitingCredit);
                }
            }
            if spins < SPIN_STEPS {
                // Credit usually returns within microseconds: back off briefly before
                // parking, which costs a futex round trip and a context switch.
                drop(st);
                backoff(spins);
                spins += 1;
                st = self.shared.state.lock();
                continue;
            }
            let weight = st.ports[self.port].weight_of(&batch);
            st.senders_waiting += 1;
            let port = &mut st.ports[self.port];
            port.waiting += 1;
            port.wanted = port.wanted.max(weight);
            st = self.shared.credit_ready.wait(st);
            st.senders_waiting -= 1;
            let port = &mut st.ports[self.port];
            port.waiting -= 1;
            if port.waiting == 0 {
                port.wanted = 0;
            }
        };
        if let Some(since) = waited_since {
            let ns = since.elapsed().as_nanos() as u64;
            st.ports[self.port].credit_wait_ns += ns;
            if let Some(t) = &self.task {
                t.add_backpressure_ns(ns);
                t.set_state(TaskState::Running);
            }
        }
        let tap = if tapped.is_empty() {
            None
        } else {
            st.ports[self.port].tap.as_ref().map(|(_, f)| f.clone())
        };
        self.wake_receiver(st);
        if let Some(tap) = tap {
            for d in tapped {
                tap(d);
            }
        }
        result
    }

    /// Ends this sender's stream. The port ends when all its senders are closed; the receiver
    /// sees the end after every queued batch. Idempotent; dropping the sender does the same.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut st = self.shared.state.lock();
        st.ports[self.port].open_senders -= 1;
        if st.ports[self.port].open_senders == 0 {
            self.wake_receiver(st);
        }
    }

    /// Counters of this sender's port.
    pub fn snapshot(&self) -> PortSnapshot {
        snapshot(&self.shared.state.lock().ports[self.port])
    }

    /// How this sender's port counts items (one record each, or their rows).
    pub fn rows(&self) -> Rows<T> {
        self.rows
    }

    /// Attributes the time this sender waits for credit to a task.
    pub(crate) fn attach_task(&mut self, task: std::sync::Arc<TaskStats>) {
        self.task = Some(task);
    }

    fn wake_receiver(&self, st: MutexGuard<'_, State<T>>) {
        let wake = st.receiver_waiting;
        drop(st);
        if wake {
            self.shared.data_ready.notify_one();
        }
    }
}

impl<T> Clone for Sender<T> {
    /// Another sender to the same port; the port stays open until every clone is closed.
    fn clone(&self) -> Self {
        let mut st = self.shared.state.lock();
        st.ports[self.port].open_senders += 1;
        drop(st);
        Sender {
            shared: self.shared.clone(),
            port: self.port,
            closed: false,
            task: None,
            rows: self.rows,
            weigh: self.weigh,
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The receiving half of an inbox: takes batches from all its ports.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T> Default for Receiver<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Receiver<T> {
    /// An inbox with no port yet.
    pub fn new() -> Self {
        Receiver {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    ports: Vec::new(),
                    cursor: 0,
                    receiver_waiting: false,
                    senders_waiting: 0,
                    receiver_alive: true,
                    aborted: false,
                    no_replay: false,
                    coalesce: 1,
                    by_class: false,
                }),
                data_ready: Condvar::new(),
                credit_ready: Condvar::new(),
            }),
        }
    }

    /// Adds a port of `capacity` records with the given policy and returns its first sender.
    ///
    /// # Panics
    /// Panics if `capacity` is zero (the graph builder validates capacities first).
    pub fn add_port(&self, capacity: usize, policy: EdgePolicy) -> Sender<T> {
        let mut cfg = PortConfig::new(capacity);
        cfg.policy = policy;
        self.add_port_with(cfg)
    }

    /// Adds a port configured in full (policy, classifier, drop tap).
    ///
    /// # Panics
    /// Panics if the capacity is zero (the graph builder validates capacities first).
    pub fn add_port_with(&self, cfg: PortConfig<T>) -> Sender<T> {
        assert!(cfg.capacity > 0, "edge capacity must be at least 1");
        let mut st = self.shared.state.lock();
        let port = st.ports.len();
        let rows = cfg.rows;
        let weigh = cfg.max_bytes.is_some();
        let mut p = Port::new(cfg);
        if let Some(l) = &mut p.lanes {
            l.merge_to(st.coalesce);
        }
        st.by_class |= p.lanes.is_some();
        st.ports.push(p);
        drop(st);
        Sender {
            shared: self.shared.clone(),
            port,
            closed: false,
            task: None,
            rows,
            weigh,
        }
    }

    /// Takes the next batch, waiting while every open port is empty.
    ///
    /// # Errors
    /// [`RecvError::Closed`] once every port has ended (end of stream),
    /// [`RecvError::Aborted`] if the job is aborting.
    pub fn recv(&self) -> Result<Batch<T>, RecvError> {
        let mut tapped = Vec::new();
        let mut st = self.shared.state.lock();
        let mut spins = 0;
        let r = loop {
            match self.take(&mut st, &mut tapped) {
                Ok(batch) => break Ok(batch),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Closed) => break Err(RecvError::Closed),
                Err(TryRecvError::Aborted) => break Err(RecvError::Aborted),
            }
            if spins < SPIN_STEPS {
                drop(st);
                backoff(spins);
                spins += 1;
                st = self.shared.state.lock();
                continue;
            }
            st.receiver_waiting = true;
            st = self.shared.data_ready.wait(st);
            st.receiver_waiting = false;
        };
        self.run_taps(st, tapped);
        r
    }

    /// Takes the next batch if one is queued.
    ///
    /// # Errors
    /// `Empty` when nothing is queued but a port is open, `Closed` at end of stream,
    /// `Aborted` if the job is aborting.
    pub fn try_recv(&self) -> Result<Batch<T>, TryRecvError> {
        let mut tapped = Vec::new();
        let mut st = self.shared.state.lock();
        let r = self.take(&mut st, &mut tapped);
        self.run_taps(st, tapped);
        r
    }

    fn run_taps(&self, st: MutexGuard<'_, State<T>>, tapped: Vec<(usize, Dropped<T>)>) {
        if tapped.is_empty() {
            return;
        }
        let taps: Vec<_> = st
            .ports
            .iter()
            .map(|p| p.tap.as_ref().map(|(_, f)| f.clone()))
            .collect();
        drop(st);
        for (port, d) in tapped {
            if let Some(Some(tap)) = taps.get(port) {
                tap(d);
            }
        }
    }

    fn take(
        &self,
        st: &mut MutexGuard<'_, State<T>>,
        tapped: &mut Vec<(usize, Dropped<T>)>,
    ) -> Result<Batch<T>, TryRecvError> {
        if st.aborted {
            return Err(TryRecvError::Aborted);
        }
        let n = st.ports.len();
        if st.by_class && n > 1 {
            return self.take_by_class(st, tapped);
        }
        let replay = !st.no_replay;
        let coalesce = st.coalesce;
        let mut expired = Vec::new();
        for i in 0..n {
            let idx = (st.cursor + i) % n;
            let port = &mut st.ports[idx];
            if matches!(port.policy, EdgePolicy::Deadline(_)) && !port.is_empty() {
                port.expire(Instant::now(), &mut expired);
                tapped.extend(expired.drain(..).map(|d| (idx, d)));
            }
            // Deferred records are replayed with capacity nothing else wants: only when the
            // port's queue is empty. Replaying whenever the port had spare credit put
            // replayed low classes ahead of the higher-class records queued behind them (in
            // a burst of pages, high-rank p99 5.3 s instead of tens of ms).
            if replay && port.is_empty() && port.deferred_pending() > 0 {
                if let Some(batch) = port.replay(port.capacity.min(REPLAY_BATCH)) {
                    st.cursor = (idx + 1) % n;
                    return Ok(batch);
                }
            }
            if let Some(batch) = port.pop_coalesced(coalesce) {
                let wake = port.should_wake_senders();
                st.cursor = (idx + 1) % n;
                if wake {
                    self.shared.credit_ready.notify_all();
                }
                return Ok(batch);
            }
            if port.should_wake_senders() {
                // Expired batches returned credit.
                self.shared.credit_ready.notify_all();
            }
        }
        if st.ports.iter().all(|p| p.ended(replay)) {
            Err(TryRecvError::Closed)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// `take` for an inbox of several ports, one of them served by class: the port whose
    /// highest queued class is highest goes first (an error on one input of a union is not
    /// kept waiting by debug records on the other), round-robin between equals. Deferred
    /// records are replayed only when no port has anything queued.
    fn take_by_class(
        &self,
        st: &mut MutexGuard<'_, State<T>>,
        tapped: &mut Vec<(usize, Dropped<T>)>,
    ) -> Result<Batch<T>, TryRecvError> {
        let n = st.ports.len();
        let replay = !st.no_replay;
        let coalesce = st.coalesce;
        let now = Instant::now();
        let mut expired = Vec::new();
        let mut best: Option<(usize, usize)> = None;
        let mut wake = false;
        for i in 0..n {
            let idx = (st.cursor + i) % n;
            let port = &mut st.ports[idx];
            if matches!(port.policy, EdgePolicy::Deadline(_)) && !port.is_empty() {
                port.expire(now, &mut expired);
                tapped.extend(expired.drain(..).map(|d| (idx, d)));
                wake |= port.should_wake_senders();
            }
            if let Some(class) = port.top_class() {
                if best.is_none_or(|(c, _)| class > c) {
                    best = Some((class, idx));
                }
            }
        }
        if let Some((_, idx)) = best {
            let port = &mut st.ports[idx];
            if let Some(batch) = port.pop_coalesced(coalesce) {
                wake |= port.should_wake_senders();
                st.cursor = (idx + 1) % n;
                if wake {
                    self.shared.credit_ready.notify_all();
                }
                return Ok(batch);
            }
        }
        if wake {
            self.shared.credit_ready.notify_all();
        }
        if replay {
            for i in 0..n {
                let idx = (st.cursor + i) % n;
                let port = &mut st.ports[idx];
                if port.deferred_pending() > 0 {
                    if let Some(batch) = port.replay(port.capacity.min(REPLAY_BATCH)) {
                        st.cursor = (idx + 1) % n;
                        return Ok(batch);
                    }
                }
            }
        }
        if st.ports.iter().all(|p| p.ended(replay)) {
            Err(TryRecvError::Closed)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Merges queued batches up to `max` records when the receiver takes them (default 1:
    /// batches are taken as sent). The runtime sets the pipeline's batch size.
    pub fn coalesce_to(&self, max: usize) {
        let mut st = self.shared.state.lock();
        st.coalesce = max.max(1);
        for p in &mut st.ports {
            if let Some(l) = &mut p.lanes {
                l.merge_to(max);
            }
        }
    }

    /// Number of ports.
    pub fn ports(&self) -> usize {
        self.shared.state.lock().ports.len()
    }

    /// Counters of one port (all zero for a port that does not exist).
    pub fn snapshot(&self, port: usize) -> PortSnapshot {
        self.shared.snapshot_port(port)
    }

    /// Aborts the inbox: every waiter wakes and every later operation fails with `Aborted`.
    pub fn abort(&self) {
        self.shared.abort_all();
    }

    /// A type-erased handle for metrics and abort that outlives the receiver.
    pub fn probe(&self) -> std::sync::Arc<dyn EdgeProbe>
    where
        T: Send + 'static,
    {
        probe_of(&self.shared)
    }
}

#[cfg(not(loom))]
fn probe_of<T: Send + 'static>(shared: &Arc<Shared<T>>) -> std::sync::Arc<dyn EdgeProbe> {
    shared.clone()
}

#[cfg(loom)]
fn probe_of<T: Send + 'static>(shared: &Arc<Shared<T>>) -> std::sync::Arc<dyn EdgeProbe> {
    // loom's Arc cannot be unsized; a forwarding wrapper keeps the API identical.
    struct Fwd<T>(Arc<Shared<T>>);
    impl<T: Send + 'static> EdgeProbe for Fwd<T> {
        fn port_snapshot(&self, port: usize) -> PortSnapshot {
            self.0.snapshot_port(port)
        }
        fn abort(&self) {
            self.0.abort_all()
        }
        fn stop_replay(&self) {
            self.0.no_replay()
        }
        fn set_policy(&self, port: usize, policy: EdgePolicy) {
            self.0.set_port_policy(port, policy)
        }
        fn queued_records(&self) -> u64 {
            let st = self.0.state.lock();
            st.ports.iter().map(|p| p.queued_records as u64).sum()
        }
    }
    std::sync::Arc::new(Fwd(shared.clone()))
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.receiver_alive = false;
        // Anything still queued will never be received.
        for p in &st.ports {
            p.fail_queued();
        }
        let wake = st.senders_waiting > 0;
        drop(st);
        if wake {
            self.shared.credit_ready.notify_all();
        }
    }
}

/// How long senders of a port have waited for credit.
impl PortSnapshot {
    /// Credit wait as a duration.
    pub fn credit_wait(&self) -> Duration {
        Duration::from_nanos(self.credit_wait_ns)
    }
}
