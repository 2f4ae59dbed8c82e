//! Damaged spool files cost only the damaged records: every kind of damage
//! is logged at ERROR with the segment, the offset and the records lost,
//! counted in the spool's counters, and delivery of everything else goes
//! on. Real segment files, damaged the way flash and people damage them.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use ledge::spool::{frame, segment, FsyncPolicy, Kind, Spool, SpoolOptions};

/// Every log line of this test process, with its level: the process's one
/// logger, so no other test in this binary may install one. Lines of other
/// tests are captured too; each test reads only those naming its folder.
struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// Lines about `dir` (tests run in parallel, each in its own directory).
fn lines_about(dir: &Path, level: log::Level) -> Vec<String> {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    let needle = dir.display().to_string();
    CAPTURE
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, text)| *l == level && text.contains(&needle))
        .map(|(_, text)| text.clone())
        .collect()
}

fn options() -> SpoolOptions {
    SpoolOptions {
        segment_size: 4096,
        max_bytes: 64 << 20,
        cursor_interval: Duration::from_millis(20),
        fsync: FsyncPolicy::Batch,
        ..SpoolOptions::default()
    }
}

fn body(i: u64) -> Vec<u8> {
    format!("record-{i:06}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

/// A closed spool in a fresh directory holding records 1..=n.
fn spool_with(n: u64) -> tempfile::TempDir {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    let mut last = 0;
    for i in 1..=n {
        last = spool.append(Kind::Event, &body(i)).unwrap();
    }
    assert!(spool.wait_durable(last, Duration::from_secs(10)).unwrap());
    spool.close();
    dir
}

/// Segment bases in order.
fn bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| segment::parse_name(&e.unwrap().file_name().to_string_lossy()))
        .collect();
    bases.sort_unstable();
    bases
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(segment::file_name(base))
}

/// Every record a fresh reader delivers, as (seq, body), checking bodies.
fn deliver(spool: &Spool) -> Vec<u64> {
    let mut reader = spool.reader("uplink");
    let mut seqs = Vec::new();
    loop {
        let batch = reader.next_batch(100, 1 << 20).unwrap();
        if batch.is_empty() {
            return seqs;
        }
        for record in batch {
            assert_eq!(
                record.body,
                body(record.seq),
                "record {} intact",
                record.seq
            );
            seqs.push(record.seq);
        }
    }
}

fn damaged(spool: &Spool) -> (u64, u64) {
    let counters = spool.counters();
    (
        counters.damaged_segments.load(Ordering::Relaxed),
        counters.damaged_records.load(Ordering::Relaxed),
    )
}

fn all_but(n: u64, lost: &[u64]) -> Vec<u64> {
    (1..=n).filter(|s| !lost.contains(s)).collect()
}

/// Compares delivered seqs with the expected ones, naming the difference
/// rather than printing thousands of numbers.
#[track_caller]
fn assert_seqs(delivered: &[u64], expected: &[u64]) {
    if delivered != expected {
        let missing: Vec<&u64> = expected.iter().filter(|s| !delivered.contains(s)).collect();
        let extra: Vec<&u64> = delivered.iter().filter(|s| !expected.contains(s)).collect();
        panic!(
            "{} delivered, {} expected; missing {} {:?}..., unexpected {:?}",
            delivered.len(),
            expected.len(),
            missing.len(),
            &missing[..missing.len().min(10)],
            &extra[..extra.len().min(10)]
        );
    }
}

fn has_line(lines: &[String], parts: &[&str]) -> bool {
    lines.iter().any(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn a_segment_replaced_by_a_directory_costs_only_its_records() {
    let n = 3000;
    let dir = spool_with(n);
    let bases = bases(dir.path());
    let (base, next) = (bases[3], bases[4]);
    let path = segment_path(dir.path(), base);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();

    let spool = Spool::open(dir.path(), options()).unwrap();
    let lost: Vec<u64> = (base..next).collect();
    assert_seqs(&deliver(&spool), &all_but(n, &lost));
    let errors = lines_about(dir.path(), log::Level::Error);
    let name = segment::file_name(base);
    assert!(
        has_line(
            &errors,
            &[&name, "offset 0", &format!("records {base}..={}", next - 1)]
        ),
        "{errors:#?}"
    );
    assert_eq!(damaged(&spool), (1, next - base));
    // New records still go in and come out.
    let seq = spool.append(Kind::Event, &body(n + 1)).unwrap();
    assert_eq!(seq, n + 1);
    assert!(spool.wait_durable(seq, Duration::from_secs(5)).unwrap());
}

#[test]
fn the_newest_segment_as_a_directory_does_not_stop_the_spool() {
    let n = 500;
    let dir = spool_with(n);
    let base = *bases(dir.path()).last().unwrap();
    let path = segment_path(dir.path(), base);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();

    let spool = Spool::open(dir.path(), options()).unwrap();
    let errors = lines_about(dir.path(), log::Level::Error);
    let name = segment::file_name(base);
    assert!(
        has_line(&errors, &[&name, "offset 0", &format!("seq {base} on")]),
        "{errors:#?}"
    );
    assert_eq!(damaged(&spool).0, 1);
    // The records the directory hid had seqs from `base` on; the new ones
    // start past its name.
    let seq = spool.append(Kind::Event, &body(base + 1)).unwrap();
    assert_eq!(seq, base + 1);
    assert!(spool.wait_durable(seq, Duration::from_secs(5)).unwrap());
    let delivered = deliver(&spool);
    assert_seqs(
        &delivered[..delivered.len() - 1],
        &(1..base).collect::<Vec<_>>(),
    );
    assert_eq!(delivered.last(), Some(&seq));
}

#[test]
fn an_emptied_newest_segment_is_reported_and_the_rest_delivered() {
    let n = 3000;
    let dir = spool_with(n);
    let base = *bases(dir.path()).last().unwrap();
    assert!(base < n, "the newest segment holds records");
    std::fs::File::create(segment_path(dir.path(), base)).unwrap();

    let spool = Spool::open(dir.path(), options()).unwrap();
    let errors = lines_about(dir.path(), log::Level::Error);
    let name = segment::file_name(base);
    assert!(
        has_line(&errors, &[&name, "offset 0", &format!("seq {base} on")]),
        "{errors:#?}"
    );
    assert_eq!(damaged(&spool).0, 1);
    assert_seqs(&deliver(&spool), &(1..base).collect::<Vec<_>>());
    // Appending goes on in the same segment, with a whole header again.
    let seq = spool.append(Kind::Event, &body(base)).unwrap();
    assert_eq!(seq, base);
    assert!(spool.wait_durable(seq, Duration::from_secs(5)).unwrap());
    spool.close();
    let bytes = std::fs::read(segment_path(dir.path(), base)).unwrap();
    assert!(segment::check_header(&bytes, base).is_ok());
}

#[test]
fn a_garbage_header_is_reported_and_its_records_still_delivered() {
    let n = 3000;
    let dir = spool_with(n);
    let bases = bases(dir.path());
    let (sealed, active) = (bases[5], *bases.last().unwrap());
    for base in [sealed, active] {
        let path = segment_path(dir.path(), base);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..segment::HEADER_LEN].copy_from_slice(b"garbage!garbage!");
        std::fs::write(&path, bytes).unwrap();
    }

    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_seqs(&deliver(&spool), &(1..=n).collect::<Vec<_>>());
    let errors = lines_about(dir.path(), log::Level::Error);
    for base in [sealed, active] {
        let name = segment::file_name(base);
        assert!(
            has_line(&errors, &[&name, "offset 0", "header"]),
            "{name}: {errors:#?}"
        );
    }
    assert_eq!(damaged(&spool), (2, 0));
    assert_eq!(spool.append(Kind::Event, &body(n + 1)).unwrap(), n + 1);
}

/// Offsets and sizes of the records of one segment file.
fn frames(bytes: &[u8]) -> Vec<(u64, usize, usize)> {
    let mut out = Vec::new();
    let mut offset = segment::HEADER_LEN;
    while offset < bytes.len() {
        let found = frame::decode(&bytes[offset..]).unwrap();
        out.push((found.seq, offset, found.size()));
        offset += found.size();
    }
    out
}

/// Flips `positions` in `path`; returns the seqs of the records hit.
fn flip(path: &Path, positions: &[usize]) -> Vec<u64> {
    let mut bytes = std::fs::read(path).unwrap();
    let records = frames(&bytes);
    for &p in positions {
        bytes[p] ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
    let mut hit: Vec<u64> = records
        .iter()
        .filter(|(_, start, size)| positions.iter().any(|p| (*start..start + size).contains(p)))
        .map(|(seq, _, _)| *seq)
        .collect();
    hit.dedup();
    hit
}

/// Twenty flipped bytes at fixed pseudo-random places, one of them raising a
/// record's length past the end of the file (which looks like a torn tail).
fn twenty_positions(bytes: &[u8]) -> Vec<usize> {
    let records = frames(bytes);
    let (_, second, _) = records[1];
    let mut positions = vec![second + 3]; // length byte 1: +0x5a00 bytes
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while positions.len() < 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let p = segment::HEADER_LEN + (x as usize) % (bytes.len() - segment::HEADER_LEN);
        if !positions.contains(&p) {
            positions.push(p);
        }
    }
    positions
}

#[test]
fn twenty_flipped_bytes_in_an_older_segment_cost_only_the_records_they_hit() {
    let n = 3000;
    let dir = spool_with(n);
    let base = bases(dir.path())[7];
    let path = segment_path(dir.path(), base);
    let positions = twenty_positions(&std::fs::read(&path).unwrap());
    let lost = flip(&path, &positions);
    assert!(!lost.is_empty() && lost.len() <= 20);

    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_seqs(&deliver(&spool), &all_but(n, &lost));
    assert_eq!(damaged(&spool), (1, lost.len() as u64));
    let errors = lines_about(dir.path(), log::Level::Error);
    let name = segment::file_name(base);
    let first = lost[0];
    assert!(
        has_line(&errors, &[&name, "offset", &format!("records {first}..=")]),
        "{errors:#?}"
    );
    // A second pass (a reconnect rewinds the uplink) reports nothing new.
    let before = lines_about(dir.path(), log::Level::Error).len();
    assert_seqs(&deliver(&spool), &all_but(n, &lost));
    assert_eq!(damaged(&spool), (1, lost.len() as u64));
    assert_eq!(lines_about(dir.path(), log::Level::Error).len(), before);
}

#[test]
fn a_flipped_length_in_the_active_segment_does_not_truncate_what_follows() {
    let n = 40;
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
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
        for i in 1..=n {
            spool.append(Kind::Event, &body(i)).unwrap();
        }
        assert!(spool.wait_durable(n, Duration::from_secs(10)).unwrap());
    }
    let path = segment_path(dir.path(), 1);
    let bytes = std::fs::read(&path).unwrap();
    let (seq, start, _) = frames(&bytes)[9];
    let lost = flip(&path, &[start + 3]);
    assert_eq!(lost, vec![seq]);

    let spool = Spool::open(dir.path(), options()).unwrap();
    assert_seqs(&deliver(&spool), &all_but(n, &lost));
    let errors = lines_about(dir.path(), log::Level::Error);
    assert!(
        has_line(
            &errors,
            &[
                &segment::file_name(1),
                &format!("offset {start}"),
                &format!("records {seq}..={seq}")
            ]
        ),
        "{errors:#?}"
    );
    assert_eq!(damaged(&spool), (1, 1));
    assert_eq!(spool.append(Kind::Event, b"next").unwrap(), n + 1);
}

#[test]
fn a_sealed_segment_deleted_behind_the_spools_back_is_skipped_and_reported() {
    let n = 600;
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), options()).unwrap();
    for i in 1..=n {
        spool.append(Kind::Event, &body(i)).unwrap();
    }
    assert!(spool.wait_durable(n, Duration::from_secs(10)).unwrap());
    let bases = bases(dir.path());
    let (base, next) = (bases[2], bases[3]);
    std::fs::remove_file(segment_path(dir.path(), base)).unwrap();
    let lost: Vec<u64> = (base..next).collect();
    assert_seqs(&deliver(&spool), &all_but(n, &lost));
    let errors = lines_about(dir.path(), log::Level::Error);
    assert!(
        has_line(
            &errors,
            &[
                &segment::file_name(base),
                &format!("records {base}..={}", next - 1)
            ]
        ),
        "{errors:#?}"
    );
    assert_eq!(damaged(&spool), (1, next - base));
}
