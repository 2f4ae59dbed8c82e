//! Durable triggers: events behind a `durable = true` trigger pass through
//! the function's own spool stream before they run, so an invocation a crash
//! interrupts runs again after the restart (at least once, the contract
//! Lambda gives asynchronous events).
//!
//! The feeder reads the stream from its cursor, queues each event for the
//! function (waiting, never throttling, when the queue is full: the events
//! are safe on flash), and moves the cursor over the contiguous prefix of
//! events whose invocations have finished.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::queue::PushError;
use super::{Dispatcher, Job, Receipt};
use crate::config::{FunctionId, Target};
use crate::event::{Event, EventSource};
use crate::spool::body::{self, TriggerBody};
use crate::spool::{AppendError, Kind, Reader, Spool};

/// Events a feeder keeps queued and unfinished at most.
const MAX_RUNNING: usize = 4096;

/// The cursor name the feeder reads with.
pub const CURSOR: &str = "invoke";

/// Stores an event in a durable trigger's stream; returns its seq.
pub fn append(spool: &Spool, event: &Event) -> Result<u64, AppendError> {
    let source = match event.source {
        EventSource::Mqtt => 0,
        EventSource::Sensor => 1,
        EventSource::Schedule => 2,
        EventSource::Invoke => 3,
        EventSource::Http => 4,
    };
    let record = body::encode(&TriggerBody::V1 {
        source,
        subject: event.subject.clone(),
        payload: event.payload.to_vec(),
        received_at_ms: event.received_at_ms,
    });
    spool.append(Kind::Event, &record)
}

fn decode(record: &crate::spool::Record) -> Option<Event> {
    let TriggerBody::V1 {
        source,
        subject,
        payload,
        received_at_ms,
    } = body::decode(&record.body).ok()?;
    let source = match source {
        0 => EventSource::Mqtt,
        1 => EventSource::Sensor,
        3 => EventSource::Invoke,
        4 => EventSource::Http,
        // 2, and sources a later ledge may add.
        _ => EventSource::Schedule,
    };
    Some(Event {
        source,
        subject,
        payload: payload.into(),
        received_at_ms,
        // A stored event restarts its chain: loops are stopped before
        // anything is stored for them.
        depth: 0,
    })
}

/// Feeds one function from its stream until `stop` changes and every event
/// it queued has finished (or was dropped unrun at shutdown).
pub async fn feed(
    dispatcher: Arc<Dispatcher>,
    target: Target,
    spool: Arc<Spool>,
    mut stop: watch::Receiver<bool>,
) {
    let function = target.function;
    let spilling = dispatcher.spilling_flag(function);
    let mut reader = Some(spool.reader(CURSOR));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
    let mut done_tx = Some(done_tx);
    // Seqs queued and not yet finished, with their finished flag, in order.
    let mut running: VecDeque<(u64, bool)> = VecDeque::new();
    // Queued and not yet finished at most: half a queue, so events from
    // the function's other sources still find room.
    let limit = (dispatcher.queue_capacity(function) / 2).clamp(1, MAX_RUNNING);
    let mut durable = spool.subscribe();
    let mut caught_up = false;
    loop {
        if let (false, Some(tx)) = (caught_up, done_tx.as_ref()) {
            if running.len() < limit {
                match next_events(&mut reader, limit - running.len()).await {
                    Some(records) if !records.is_empty() => {
                        for (seq, event) in records {
                            let Some(event) = event else {
                                log::error!(target: "ledge::dispatch", "{}: durable record {seq} cannot be decoded; skipped", spool.dir().display());
                                running.push_back((seq, true));
                                continue;
                            };
                            let receipt = Receipt {
                                seq,
                                done: tx.clone(),
                            };
                            // An alias's canary gets its share of the
                            // stream too, chosen per record.
                            let version = dispatcher.pick(target);
                            if !queue(&dispatcher, version, event, receipt, &mut stop).await {
                                done_tx = None;
                                break;
                            }
                            running.push_back((seq, false));
                        }
                        confirm(&spool, &mut running);
                        continue;
                    }
                    Some(_) => {
                        // Records appended but not yet durable (spilled
                        // events, which nobody waits on): commit them now
                        // instead of at the next fsync interval.
                        caught_up = true;
                        if !spool.sync_appended() {
                            // Nothing spilled is left: new events may go
                            // straight to the queue again.
                            if let Some(flag) = &spilling {
                                flag.store(false, std::sync::atomic::Ordering::Release);
                            }
                        }
                    }
                    None => return,
                }
            }
        }
        if done_tx.is_none() && running.iter().all(|(_, finished)| *finished) {
            confirm(&spool, &mut running);
            return;
        }
        tokio::select! {
            finished = done_rx.recv() => match finished {
                Some(seq) => {
                    if let Some(entry) = running.iter_mut().find(|(s, _)| *s == seq) {
                        entry.1 = true;
                    }
                    confirm(&spool, &mut running);
                    caught_up = false;
                }
                None => return,
            },
            changed = durable.changed(), if caught_up && done_tx.is_some() => {
                if changed.is_err() {
                    return;
                }
                caught_up = false;
            }
            _ = stop.changed(), if done_tx.is_some() => {
                // Stop reading; keep confirming what the workers finish.
                done_tx = None;
            }
        }
    }
}

/// Feeds one function from its stream in batches (poll-based, like an SQS
/// event source mapping): up to `batch.size` events, or fewer once
/// `batch.window` has passed since the first of them, as one invocation
/// whose payload is `{"records": [...]}`. One batch is in flight at a time;
/// the cursor moves past a batch once its invocation is finished for good
/// (succeeded, or failed its retries and went to the failure destination),
/// so a crash before that delivers the whole batch again.
pub async fn feed_batches(
    dispatcher: Arc<Dispatcher>,
    target: Target,
    spool: Arc<Spool>,
    batch: crate::config::BatchSpec,
    mut stop: watch::Receiver<bool>,
) {
    let mut reader = Some(spool.reader(CURSOR));
    let mut appended = spool.subscribe();
    loop {
        let mut records: Vec<(u64, Option<Event>)> = Vec::new();
        let mut first_at: Option<tokio::time::Instant> = None;
        // Gather.
        loop {
            let Some(more) = next_events(&mut reader, batch.size - records.len()).await else {
                return;
            };
            if !more.is_empty() && first_at.is_none() {
                first_at = Some(tokio::time::Instant::now());
            }
            records.extend(more);
            if records.len() >= batch.size {
                break;
            }
            let window_end = first_at.map(|t| t + batch.window);
            if window_end.is_some_and(|end| end <= tokio::time::Instant::now()) {
                break;
            }
            tokio::select! {
                changed = appended.changed() => if changed.is_err() { return },
                _ = sleep_until(window_end) => {}
                // Records gathered but not sent stay in the stream for the
                // next start.
                _ = stop.changed() => return,
            }
        }
        let Some(last_seq) = records.last().map(|(seq, _)| *seq) else {
            continue;
        };
        let event = batch_event(&records, spool.dir());
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<u64>();
        let receipt = Receipt {
            seq: last_seq,
            done: done_tx,
        };
        if !queue(
            &dispatcher,
            dispatcher.pick(target),
            event,
            receipt,
            &mut stop,
        )
        .await
        {
            return;
        }
        // Wait for the batch's final outcome, even while stopping: it is
        // bounded by the function's timeout and retries.
        if done_rx.recv().await == Some(last_seq) {
            spool.ack(CURSOR, last_seq);
        } else {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One event carrying a batch of records; its receive time is the oldest
/// record's, so the event-age metric is the batch's iterator age.
fn batch_event(records: &[(u64, Option<Event>)], stream: &std::path::Path) -> Event {
    let mut oldest = u64::MAX;
    let items: Vec<serde_json::Value> = records
        .iter()
        .map(|(seq, event)| match event {
            Some(event) => {
                oldest = oldest.min(event.received_at_ms);
                let mut item = serde_json::json!({
                    "seq": seq,
                    "source": event.source.to_string(),
                    "subject": event.subject,
                    "received_at_ms": event.received_at_ms,
                });
                match std::str::from_utf8(&event.payload) {
                    Ok(text) => item["payload"] = text.into(),
                    Err(_) => {
                        item["payload_hex"] = crate::hex::encode(&event.payload).into()
                    }
                }
                item
            }
            None => {
                log::error!(target: "ledge::dispatch", "{}: durable record {seq} cannot be decoded; its batch says so", stream.display());
                serde_json::json!({ "seq": seq, "error": "record could not be decoded" })
            }
        })
        .collect();
    let mut event = Event::new(
        EventSource::Mqtt,
        "batch".to_owned(),
        serde_json::json!({ "records": items }).to_string(),
    );
    if oldest != u64::MAX {
        event.received_at_ms = oldest;
    }
    event
}

/// Moves the cursor over the finished prefix.
fn confirm(spool: &Spool, running: &mut VecDeque<(u64, bool)>) {
    let mut last = None;
    while running.front().is_some_and(|(_, finished)| *finished) {
        last = running.pop_front().map(|(seq, _)| seq);
    }
    if let Some(seq) = last {
        spool.ack(CURSOR, seq);
    }
}

/// Queues an event, waiting while the queue is full; false if ledge is
/// stopping.
async fn queue(
    dispatcher: &Dispatcher,
    function: FunctionId,
    event: Event,
    receipt: Receipt,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut job = Job::new(Arc::new(event));
    job.receipt = Some(receipt);
    loop {
        // Listen for room before trying, so room made in between is seen.
        let room = dispatcher.room().notified();
        tokio::pin!(room);
        room.as_mut().enable();
        match dispatcher.push_job(function, job) {
            Ok(()) => return true,
            Err(PushError::Closed(_)) => return false,
            Err(PushError::Full(back)) => job = back,
        }
        tokio::select! {
            _ = &mut room => {}
            // Room in a queue is signalled once per refusal; a fallback
            // poll keeps a missed signal from stalling the stream.
            _ = tokio::time::sleep(ROOM_POLL) => {}
            _ = stop.changed() => return false,
        }
    }
}

/// How often a feeder looks for room if no signal came.
const ROOM_POLL: Duration = Duration::from_millis(100);

/// Reads up to `max` durable records; `None` if the reader failed.
async fn next_events(reader: &mut Option<Reader>, max: usize) -> Option<Vec<(u64, Option<Event>)>> {
    let mut taken = reader.take()?;
    let (returned, batch) = tokio::task::spawn_blocking(move || {
        let batch = taken.next_batch(max, 4 << 20);
        (taken, batch)
    })
    .await
    .ok()?;
    *reader = Some(returned);
    match batch {
        Ok(records) => Some(records.iter().map(|r| (r.seq, decode(r))).collect()),
        Err(e) => {
            log::error!(target: "ledge::dispatch", "cannot read a durable trigger stream: {e}");
            None
        }
    }
}
