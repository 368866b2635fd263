//! The poller thread: it owns the consumer, polls, decodes, batches, hands batches to the
//! source task over a bounded channel, pauses the partitions when the graph has refused
//! batches for `pause_after` and resumes them when it has drained, stores offsets as acks
//! come back, and dead-letters what does not decode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use sluice_engine::AckOutcome;

use super::super::codec::Incoming;
use super::dead_letter::DeadLetters;
use super::offsets::{store_all, AckMsg, Ready, Tracker};
use super::rebalance::Ctx;
use super::{Decoder, KafkaSourceConfig, KafkaSourceStats};

#[allow(clippy::too_many_arguments)]
pub(super) fn poller<T: Send + 'static>(
    consumer: BaseConsumer<Ctx<T>>,
    cfg: KafkaSourceConfig,
    decode: Decoder<T>,
    tx: Sender<Ready<T>>,
    acks: Receiver<AckMsg>,
    tracker: Arc<Mutex<Tracker>>,
    stats: Arc<KafkaSourceStats>,
    stop: Arc<AtomicBool>,
    dlq: DeadLetters,
) {
    let mut held: Option<Ready<T>> = None;
    let mut current = Ready {
        records: Vec::with_capacity(cfg.batch_size),
        ranges: Vec::new(),
    };
    let mut paused_at: Option<Instant> = None;
    let mut blocked_since: Option<Instant> = None;
    // Idleness (for `end_when_idle`) counts only while this member holds partitions, is not
    // paused and has nothing waiting: time spent in a rebalance, paused, or blocked on the
    // graph is not a quiet topic (counting it ended a member that was revoked mid-stream).
    let mut idle_since: Option<Instant> = None;
    let mut emitted = 0u64;
    // Acks are applied as they come; offsets are stored when acks arrived, at most every
    // 10 ms (storing walks every partition and crosses into librdkafka: once per message it
    // capped the source at a few thousand messages per second).
    let mut last_store = Instant::now();
    let mut unstored = false;
    let mut ctx_drain = |stats: &KafkaSourceStats, force: bool| {
        if acks.is_empty() && !unstored {
            return;
        }
        let mut t = tracker.lock();
        while let Ok(m) = acks.try_recv() {
            t.ack(&m);
            unstored = true;
            if m.outcome == AckOutcome::Done {
                stats.acked.fetch_add(m.records, Ordering::Relaxed);
            } else {
                stats.failed_acks.fetch_add(1, Ordering::Relaxed);
            }
        }
        if unstored && (force || last_store.elapsed() >= Duration::from_millis(10)) {
            store_all(&consumer, &t, None, stats);
            last_store = Instant::now();
            unstored = false;
        }
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        ctx_drain(&stats, false);
        // Hand over what is ready; hold it while the channel is full.
        if let Some(r) = held.take() {
            match tx.try_send(r) {
                Ok(()) => blocked_since = None,
                Err(TrySendError::Full(r)) => {
                    held = Some(r);
                    blocked_since.get_or_insert_with(Instant::now);
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        // A short stall: wait for room without polling (librdkafka's bounded queue holds
        // what it fetches meanwhile).
        if let (Some(since), None) = (blocked_since, paused_at) {
            let left = cfg.pause_after.saturating_sub(since.elapsed());
            if let Some(r) = held.take_if(|_| !left.is_zero()) {
                match tx.send_timeout(r, left.min(Duration::from_millis(20))) {
                    Ok(()) => blocked_since = None,
                    Err(SendTimeoutError::Timeout(r)) => held = Some(r),
                    Err(SendTimeoutError::Disconnected(_)) => break,
                }
                continue;
            }
        }
        let waiting = tx.len() + usize::from(held.is_some());
        let stalled = blocked_since.is_some_and(|t| t.elapsed() >= cfg.pause_after);
        match paused_at {
            None if stalled && waiting >= cfg.prefetch_batches => {
                if let Ok(a) = consumer.assignment() {
                    if consumer.pause(&a).is_ok() {
                        paused_at = Some(Instant::now());
                        stats.paused.store(true, Ordering::Relaxed);
                        stats.pauses.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Some(at) if waiting <= cfg.resume_below && at.elapsed() >= cfg.min_pause => {
                if let Ok(a) = consumer.assignment() {
                    if consumer.resume(&a).is_ok() {
                        paused_at = None;
                        stats.paused.store(false, Ordering::Relaxed);
                        stats.resumes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            _ => {}
        }
        if cfg.max_records.is_some_and(|m| emitted >= m) && held.is_none() {
            break;
        }
        let timeout = if paused_at.is_some() || held.is_some() {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(5)
        };
        // A revoke during this poll may take the held batch back.
        let parked = held.is_some();
        if parked {
            *consumer.context().held.lock() = held.take();
        }
        let polled = consumer.poll(timeout);
        if parked {
            held = consumer.context().held.lock().take();
            if held.is_none() {
                blocked_since = None;
            }
        }
        match polled {
            Some(Ok(m)) => {
                idle_since = None;
                stats.polled.fetch_add(1, Ordering::Relaxed);
                let (topic, partition, offset) = (m.topic().to_string(), m.partition(), m.offset());
                match decode(&Incoming::from_message(&m)) {
                    Ok(r) => {
                        current.records.push(r);
                        emitted += 1;
                        match current.ranges.last_mut() {
                            Some((t, p, _, last)) if *t == topic && *p == partition => {
                                *last = offset
                            }
                            _ => current.ranges.push((topic, partition, offset, offset)),
                        }
                    }
                    Err(reason) => {
                        {
                            let mut t = tracker.lock();
                            // The batch being filled holds earlier offsets that the tracker
                            // does not know yet: register them first, or storing past this
                            // message's offset would pass them too.
                            for (tp, p, first, last) in &current.ranges {
                                t.polled((tp.clone(), *p), *first, *last);
                            }
                            t.polled((topic, partition), offset, offset);
                        }
                        // Its offset is acked when the dead letter is durable.
                        dlq.send(&m, &reason.to_string());
                    }
                }
                let limit_hit = cfg.max_records.is_some_and(|mx| emitted >= mx);
                if current.records.len() >= cfg.batch_size || limit_hit {
                    flush(&mut current, &mut held, &tracker, cfg.batch_size);
                }
            }
            Some(Err(e)) => {
                // Transient client errors (broker down, rebalancing) are retried by
                // librdkafka; record the latest for the report.
                stats.errors.fetch_add(1, Ordering::Relaxed);
                *stats.error.lock() = Some(e.to_string());
            }
            None => {
                if consumer
                    .context()
                    .revoke_seen
                    .swap(false, Ordering::Acquire)
                {
                    let revoked = consumer.context().revoked.lock().take().unwrap_or_default();
                    // The partial batch was never handed over: drop it if it only holds
                    // revoked partitions (re-read by their next owner).
                    let only_revoked = current
                        .ranges
                        .iter()
                        .all(|(t, p, _, _)| revoked.iter().any(|(rt, rp)| rt == t && rp == p));
                    if only_revoked {
                        stats
                            .returned
                            .fetch_add(current.records.len() as u64, Ordering::Relaxed);
                        current.records.clear();
                        current.ranges.clear();
                    }
                    // A new assignment starts unpaused.
                    if paused_at.take().is_some() {
                        stats.paused.store(false, Ordering::Relaxed);
                    }
                }
                if !current.records.is_empty() && held.is_none() {
                    flush(&mut current, &mut held, &tracker, cfg.batch_size);
                }
                if let Some(idle) = cfg.end_when_idle {
                    let quiet = paused_at.is_none()
                        && held.is_none()
                        && current.records.is_empty()
                        && tx.is_empty()
                        && consumer.context().assigned_here.load(Ordering::Relaxed) > 0;
                    if !quiet {
                        idle_since = None;
                    } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= idle {
                        break;
                    }
                }
            }
        }
    }
    // Hand over what remains, then wait for outstanding acks briefly and commit.
    if !current.records.is_empty() && held.is_none() {
        flush(&mut current, &mut held, &tracker, cfg.batch_size);
    }
    if !stop.load(Ordering::Relaxed) {
        if let Some(r) = held.take() {
            let _ = tx.send_timeout(r, Duration::from_secs(5));
        }
    }
    consumer.context().ready_back.lock().take();
    drop(tx);
    stats.ended.store(true, Ordering::Relaxed);
    // Dead letters in flight are reported first (their acks store their offsets).
    dlq.flush();
    // Records still in the graph end soon (delivered, or failed if the job aborts): wait a
    // bounded time for their acks so their offsets are stored before leaving.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        ctx_drain(&stats, false);
        let busy = tracker.lock().outstanding.values().any(|o| !o.is_empty());
        if !busy {
            break;
        }
        consumer.poll(Duration::from_millis(10));
    }
    ctx_drain(&stats, true);
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
}

fn flush<T>(
    current: &mut Ready<T>,
    held: &mut Option<Ready<T>>,
    tracker: &Mutex<Tracker>,
    batch_size: usize,
) {
    let ready = std::mem::replace(
        current,
        Ready {
            records: Vec::with_capacity(batch_size),
            ranges: Vec::new(),
        },
    );
    let mut t = tracker.lock();
    for (topic, p, first, last) in &ready.ranges {
        t.polled((topic.clone(), *p), *first, *last);
    }
    *held = Some(ready);
}
