//! The spool keeps what it acknowledged: records come back in order, intact,
//! across segment rolls, restarts, torn tails, damage and full quotas.
//! Real files in temporary directories throughout.

use std::path::Path;
use std::time::Duration;

use ledge::spool::{self, FsyncPolicy, Kind, OnFull, Spool, SpoolOptions};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn options() -> SpoolOptions {
    SpoolOptions {
        segment_size: 4096,
        max_bytes: 1 << 20,
        cursor_interval: Duration::from_millis(20),
        fsync: FsyncPolicy::Batch,
        ..SpoolOptions::default()
    }
}

fn body(i: u64) -> Vec<u8> {
    format!("record-{i:06}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

/// Appends `n` records and waits until all are durable; returns their seqs.
fn fill(spool: &Spool, n: u64) -> Vec<u64> {
    let seqs: Vec<u64> = (0..n)
        .map(|i| spool.append(Kind::Event, &body(i)).unwrap())
        .collect();
    if let Some(&last) = seqs.last() {
        assert!(spool.wait_durable(last, Duration::from_secs(10)).unwrap());
    }
    seqs
}

fn read_all(spool: &Spool, reader: &str) -> Vec<spool::Record> {
    let mut reader = spool.reader(reader);
    let mut out = Vec::new();
    loop {
        let batch = reader.next_batch(100, 1 << 20).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

fn segments(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

#[test]
fn records_come_back_in_order_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    let seqs = fill(&spool, 500);
    assert_eq!(seqs, (1..=500).collect::<Vec<_>>());
    assert!(segments(dir.path()).len() > 5, "small segments roll");
    let records = read_all(&spool, "uplink");
    assert_eq!(records.len(), 500);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, i as u64 + 1);
        assert_eq!(record.body, body(i as u64));
        assert_eq!(record.kind, Kind::Event);
    }
}

#[test]
fn every_policy_acknowledges_only_after_fdatasync() {
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Batch,
        FsyncPolicy::Interval(Duration::from_millis(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            dir.path(),
            SpoolOptions {
                fsync: policy,
                ..options()
            },
        )
        .unwrap();
        fill(&spool, 50);
        let fsyncs = spool
            .counters()
            .fsyncs
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(fsyncs >= 1, "{policy}: no fsync");
        if policy == FsyncPolicy::Always {
            assert!(fsyncs >= 50, "always syncs each record: {fsyncs}");
        }
        assert_eq!(spool.synced_through(), 50, "{policy}");
    }
}

#[test]
fn group_commit_shares_one_fsync_among_many_appends() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path(),
        SpoolOptions {
            fsync: FsyncPolicy::Interval(Duration::from_millis(50)),
            segment_size: 8 << 20,
            ..options()
        },
    )
    .unwrap();
    fill(&spool, 2000);
    let fsyncs = spool
        .counters()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(fsyncs < 20, "2000 appends took {fsyncs} fsyncs");
}

#[test]
fn a_restart_resumes_seqs_and_the_reader_at_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), options()).unwrap();
        fill(&spool, 100);
        let mut reader = spool.reader("uplink");
        let batch = reader.next_batch(40, 1 << 20).unwrap();
        spool.ack("uplink", batch.last().unwrap().seq);
        spool.close();
    }
    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_eq!(spool.cursor("uplink"), Some(40));
    let rest = read_all(&spool, "uplink");
    assert_eq!(rest.first().map(|r| r.seq), Some(41));
    assert_eq!(rest.len(), 60);
    assert_eq!(spool.append(Kind::Log, b"after restart").unwrap(), 101);
}

#[test]
fn confirmed_segments_are_deleted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    fill(&spool, 400);
    let before = segments(dir.path()).len();
    let records = read_all(&spool, "uplink");
    spool.ack("uplink", records.last().unwrap().seq);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while segments(dir.path()).len() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "from {before} segments only the active one is left"
    );
    assert!(dir.path().join("uplink.cursor").exists());
}

#[test]
fn a_torn_tail_is_cut_at_the_last_whole_record_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(
            dir.path(),
            SpoolOptions {
                segment_size: 1 << 20,
                ..options()
            },
        )
        .unwrap();
        fill(&spool, 20);
    }
    let active = dir.path().join(segments(dir.path()).pop().unwrap());
    let whole = std::fs::metadata(&active).unwrap().len();
    // A record that was half written when the power went.
    let mut torn = Vec::new();
    ledge::spool::frame::encode(&mut torn, 21, 0, Kind::Event, b"never finished");
    let mut bytes = std::fs::read(&active).unwrap();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&active, &bytes).unwrap();
    assert!(
        ledge::spool::verify(dir.path()).unwrap().problems[0].contains(&format!(
            "torn tail (recovered at next start): {} bytes at offset {whole}",
            torn.len() / 2
        ))
    );

    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_eq!(std::fs::metadata(&active).unwrap().len(), whole);
    let records = read_all(&spool, "uplink");
    assert_eq!(records.len(), 20);
    assert_eq!(spool.append(Kind::Event, b"next").unwrap(), 21);
    drop(spool);
    assert!(ledge::spool::verify(dir.path())
        .unwrap()
        .problems
        .is_empty());
}

#[test]
fn garbage_after_the_last_record_is_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), options()).unwrap();
        fill(&spool, 3);
    }
    let active = dir.path().join(segments(dir.path()).pop().unwrap());
    let mut bytes = std::fs::read(&active).unwrap();
    let whole = bytes.len();
    bytes.extend_from_slice(&[0xA7, 0x1E, 0xde, 0xad, 0xbe, 0xef, 0x13, 0x37]);
    std::fs::write(&active, &bytes).unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_eq!(std::fs::metadata(&active).unwrap().len() as usize, whole);
    assert_eq!(read_all(&spool, "r").len(), 3);
}

#[test]
fn damage_in_a_sealed_segment_is_skipped_counted_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), options()).unwrap();
        fill(&spool, 200);
    }
    let sealed = dir.path().join(&segments(dir.path())[1]);
    let mut bytes = std::fs::read(&sealed).unwrap();
    // Flip a byte inside the body of the segment's second record.
    let first = ledge::spool::frame::decode(&bytes[16..]).unwrap();
    let target = 16 + first.size() + 30;
    bytes[target] ^= 0x55;
    std::fs::write(&sealed, &bytes).unwrap();

    let report = ledge::spool::verify(dir.path()).unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("damaged bytes at offset")),
        "{:?}",
        report.problems
    );

    let spool = Spool::open(dir.path(), options()).unwrap();
    let mut reader = spool.reader("uplink");
    let mut seqs = Vec::new();
    loop {
        let batch = reader.next_batch(64, 1 << 20).unwrap();
        if batch.is_empty() {
            break;
        }
        seqs.extend(batch.iter().map(|r| r.seq));
    }
    assert_eq!(seqs.len(), 199);
    assert_eq!(reader.skipped, 1);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "order kept");
}

#[test]
fn drop_oldest_keeps_the_quota_and_counts_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path(),
        SpoolOptions {
            max_bytes: 16 << 10,
            on_full: OnFull::DropOldest,
            ..options()
        },
    )
    .unwrap();
    fill(&spool, 1000);
    assert!(
        spool.disk_bytes() <= 16 << 10,
        "{} bytes on disk",
        spool.disk_bytes()
    );
    let dropped = spool
        .counters()
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    let records = read_all(&spool, "uplink");
    assert!(dropped > 0);
    assert_eq!(
        dropped + records.len() as u64,
        1000,
        "every record is delivered or counted as dropped"
    );
    assert_eq!(records.last().unwrap().seq, 1000, "the newest are kept");
}

#[test]
fn reject_refuses_when_full_and_accepts_again_once_upstream_confirms() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path(),
        SpoolOptions {
            max_bytes: 16 << 10,
            on_full: OnFull::Reject,
            ..options()
        },
    )
    .unwrap();
    let mut reader = spool.reader("uplink");
    let mut accepted = 0u64;
    let refused = loop {
        match spool.append(Kind::Event, &body(accepted)) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 10_000);
    };
    assert_eq!(refused, ledge::spool::AppendError::Full);
    assert_eq!(
        spool
            .counters()
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    spool
        .wait_durable(accepted, Duration::from_secs(5))
        .unwrap();
    let mut last = 0;
    loop {
        let batch = reader.next_batch(1000, 1 << 20).unwrap();
        match batch.last() {
            Some(r) => last = r.seq,
            None => break,
        }
    }
    assert_eq!(last, accepted, "nothing accepted was dropped");
    spool.ack("uplink", last);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while spool.append(Kind::Event, b"room again").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "space never came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_process_cannot_open_a_spool_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), options()).unwrap();
    match Spool::open(dir.path(), options()) {
        Err(ledge::spool::SpoolError::Locked(path)) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn leftovers_and_out_of_range_cursors_are_repaired_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), options()).unwrap();
        fill(&spool, 10);
    }
    std::fs::write(dir.path().join("uplink.cursor.tmp"), b"half").unwrap();
    // A cursor from the future (say, a restored backup of the cursor file).
    {
        let spool = Spool::open(dir.path(), options()).unwrap();
        let _ = spool.reader("uplink");
        spool.ack("uplink", 10);
    }
    let spool = Spool::open(dir.path(), options()).unwrap();
    assert!(!dir.path().join("uplink.cursor.tmp").exists());
    assert_eq!(spool.cursor("uplink"), Some(10));
    assert!(read_all(&spool, "uplink").is_empty());
}

#[test]
fn stat_reports_segments_range_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = Spool::open(dir.path(), options()).unwrap();
        fill(&spool, 300);
        let _ = spool.reader("uplink");
        spool.ack("uplink", 120);
    }
    let info = ledge::spool::inspect(dir.path()).unwrap();
    assert_eq!(info.newest_seq, Some(300));
    assert_eq!(info.cursors.get("uplink"), Some(&120));
    assert!(info.segments > 1 && info.bytes > 300 * 27);
    assert!(info.epoch.is_some());
}

/// What a test run did, for the model check below.
#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Read(u8),
    AckRead,
    Restart,
    TearTail(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..20).prop_map(Op::Append),
        2 => (1u8..30).prop_map(Op::Read),
        1 => Just(Op::AckRead),
        1 => Just(Op::Restart),
        1 => (1u16..200).prop_map(Op::TearTail),
    ]
}

proptest! {
    // Failures found are kept beside this file (spool.proptest-regressions)
    // and rerun first.
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// Against a model (a list of durable records and a confirmed cursor):
    /// after any sequence of appends, reads, acks, restarts and torn tails,
    /// a fresh reader delivers exactly the durable records after the cursor,
    /// intact and in order, and seqs are never reused.
    #[test]
    fn the_spool_matches_a_simple_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let options = SpoolOptions { segment_size: 1024, cursor_interval: Duration::from_millis(5), ..options() };
        let mut spool = Some(Spool::open(dir.path(), options.clone()).unwrap());
        let mut durable: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut read_upto = 0u64;
        let mut confirmed = 0u64;
        let mut reader = spool.as_ref().unwrap().reader("uplink");
        for op in ops {
            let s = spool.as_ref().unwrap();
            match op {
                Op::Append(n) => {
                    for _ in 0..n {
                        let payload = body(durable.len() as u64 + 7);
                        let seq = s.append(Kind::Event, &payload).unwrap();
                        prop_assert!(durable.last().is_none_or(|(last, _)| seq > *last), "seq reused");
                        durable.push((seq, payload));
                    }
                    let last = durable.last().unwrap().0;
                    prop_assert!(s.wait_durable(last, Duration::from_secs(5)).unwrap());
                }
                Op::Read(n) => {
                    for record in reader.next_batch(n as usize, 1 << 20).unwrap() {
                        let expected = durable.iter().find(|(seq, _)| *seq == record.seq);
                        prop_assert_eq!(Some(&record.body), expected.map(|(_, b)| b));
                        prop_assert!(record.seq > read_upto);
                        read_upto = record.seq;
                    }
                }
                Op::AckRead => {
                    s.ack("uplink", read_upto);
                    confirmed = read_upto;
                }
                Op::Restart => {
                    spool.take().unwrap().close();
                    spool = Some(Spool::open(dir.path(), options.clone()).unwrap());
                    reader = spool.as_ref().unwrap().reader("uplink");
                    read_upto = confirmed;
                }
                Op::TearTail(n) => {
                    // Garbage after the last durable record, as a power cut
                    // mid-write leaves it; recovery must cut exactly that.
                    spool.take().unwrap().close();
                    let active = dir.path().join(segments(dir.path()).pop().unwrap());
                    let mut bytes = std::fs::read(&active).unwrap();
                    bytes.extend((0..n).map(|i| (i as u8).wrapping_mul(31) | 1));
                    std::fs::write(&active, bytes).unwrap();
                    spool = Some(Spool::open(dir.path(), options.clone()).unwrap());
                    reader = spool.as_ref().unwrap().reader("uplink");
                    read_upto = confirmed;
                }
            }
        }
        let s = spool.as_ref().unwrap();
        let mut fresh = s.reader("uplink");
        let mut delivered = Vec::new();
        loop {
            let batch = fresh.next_batch(1000, 1 << 22).unwrap();
            if batch.is_empty() { break; }
            delivered.extend(batch.into_iter().map(|r| (r.seq, r.body)));
        }
        let cursor = s.cursor("uplink").unwrap();
        let expected: Vec<(u64, Vec<u8>)> = durable.into_iter().filter(|(seq, _)| *seq > cursor).collect();
        prop_assert!(cursor <= confirmed.max(read_upto));
        prop_assert_eq!(delivered, expected);
    }
}

/// Group commit on demand: under `interval`, a producer waiting for its
/// record (an MQTT acknowledgement, a function's forward) makes the syncer
/// commit at once instead of at the next tick, and that one commit carries
/// every record buffered before it, waited for or not.
#[test]
fn a_waiting_producer_is_not_paced_by_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path(),
        SpoolOptions {
            // Far longer than the waits below: only a commit on demand
            // can make them succeed.
            fsync: FsyncPolicy::Interval(Duration::from_secs(600)),
            // Housekeeping writes what is buffered too: keep it away.
            cursor_interval: Duration::from_secs(600),
            ..options()
        },
    )
    .unwrap();
    let fsyncs = || {
        spool
            .counters()
            .fsyncs
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let unwaited = spool.append(Kind::Log, b"nobody waits for me").unwrap();
    let waited = spool.append(Kind::Event, b"a forward").unwrap();
    assert!(
        spool.wait_durable(waited, Duration::from_secs(30)).unwrap(),
        "the waiter was left for the interval"
    );
    assert_eq!(spool.synced_through(), waited);
    assert!(unwaited < waited);
    assert_eq!(fsyncs(), 1, "one commit for both records");

    // The async waiter (MQTT acknowledgements) too.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let seq = spool.append(Kind::Event, b"acknowledged").unwrap();
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), spool.durable(seq)).await })
        .expect("the async waiter was left for the interval")
        .unwrap();
    assert_eq!(fsyncs(), 2);
}
