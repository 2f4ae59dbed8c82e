//! MQTT load benchmarks of the hot path (MQTT → wasm → MQTT), each ratio
//! measured in the same run: broker ceilings (mosquitto, ledge's embedded
//! broker alone), the no-wasm relay baseline against ledge through
//! mosquitto at QoS 0 and 1, ledge on its embedded broker against that
//! broker's ceiling, CPU per message at ledge's highest sustained rate,
//! latency at a steady 1,000 msg/s, bursts of 200,000 readings (delivered,
//! lost, spilled, dead-lettered), durable ingestion of 10,000 QoS 1
//! forwards against a plain subscriber, and memory idle and under load.
//! ledge runs `functions/reading-relay` (the issue's job: parse a JSON
//! reading, compare, republish at QoS 1) with default settings.
//!
//! `benches/run.sh` is the entry point: it builds `target/release/ledge` and
//! runs `mqtt_load all --ledge target/release/ledge`. Subcommands:
//!
//! ```text
//! mqtt_load all --ledge PATH [--repeats N] [--latency-secs S] [--load-secs S]
//! mqtt_load hostile --ledge PATH [--latency-secs S]   (only the hostile-neighbour run;
//!                HOSTILE_ONLY=bomb,spin picks attackers by topic, to find which one hurts)
//! mqtt_load ingest --ledge PATH [--repeats N]   (only the durable-ingestion run)
//! mqtt_load relay --port P --input FILTER --output TOPIC [--nodelay]
//! mqtt_load search --port P --input TOPIC --output FILTER [--qos 0|1]
//! mqtt_load load --port P --input TOPIC --output FILTER [--qos 0|1]
//!                (--burst N | --rate R --secs S)
//! ```
//!
//! `all` starts everything it measures (mosquitto, `ledge run`, the relay)
//! on free loopback ports and kills it afterwards. Progress and every step
//! go to stderr; stdout gets one tab-separated `result` line per figure:
//! `result <key> <median> <min> <max> <unit> <note>` (median, min and max
//! over the repeats).

#[path = "mqtt_load/generator.rs"]
mod generator;
#[path = "mqtt_load/procs.rs"]
mod procs;
#[path = "mqtt_load/relay.rs"]
mod relay;
#[path = "mqtt_load/search.rs"]
mod search;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use generator::{LoadResult, Offer, Target};
use rumqttc::QoS;
use search::SearchResult;

/// The input topic ledge's trigger (and the relay) subscribes to, and where
/// their outputs go.
const READING_TOPIC: &str = "sensors/t1/reading";
const READING_FILTER: &str = "sensors/+/reading";
const ALERT_TOPIC: &str = "alerts/t1";
const ALERT_FILTER: &str = "alerts/#";
/// The topic of broker-only runs (publisher and subscriber on one topic).
const DIRECT_TOPIC: &str = "bench/direct";
/// The steady rate of the latency runs and of the memory load.
const STEADY_RATE: f64 = 1000.0;
/// The rate and duration of the CPU-per-message runs: below both the
/// relay's and ledge's limits.
const CPU_RATE: f64 = 4000.0;
const CPU_SECS: f64 = 5.0;
/// How often memory is read under load.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How long ledge sits idle before its idle memory is read.
const IDLE_SECS: u64 = 5;
/// The relay's lifetime if nobody stops it.
const RELAY_LIFETIME: Duration = Duration::from_secs(900);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("all") => Options::parse(&args[1..]).and_then(|o| run_all(&o)),
        Some("hostile") => Options::parse(&args[1..]).and_then(|o| run_hostile(&o)),
        Some("ingest") => Options::parse(&args[1..]).and_then(|o| run_ingest(&o)),
        Some("relay") => relay_command(&args[1..]),
        Some("search") => search_command(&args[1..]),
        Some("load") => load_command(&args[1..]),
        // `cargo bench` runs every bench with `--bench`: this one needs a
        // release build of ledge and minutes of wall time, so it only says
        // how to run it.
        Some("--bench") | None => {
            println!("mqtt_load: run benches/run.sh (see BENCHMARKS.md)");
            Ok(())
        }
        Some(other) => Err(format!(
            "unknown subcommand {other:?}; see benches/mqtt_load.rs"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqtt_load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The value following `--name` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn number<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match flag(args, name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| format!("{name} {text:?} is not a number")),
    }
}

fn required<'a>(args: &'a [String], name: &str) -> Result<&'a str, String> {
    flag(args, name).ok_or_else(|| format!("{name} is required"))
}

fn relay_command(args: &[String]) -> Result<(), String> {
    relay::run(&relay::RelayArgs {
        port: number(args, "--port", 0)?,
        input: required(args, "--input")?.to_owned(),
        output: required(args, "--output")?.to_owned(),
        nodelay: args.iter().any(|a| a == "--nodelay"),
        max_lifetime: RELAY_LIFETIME,
    })
}

/// The target named by `--port`, `--input`, `--output` and `--qos`.
fn target_args(args: &[String]) -> Result<Target, String> {
    let qos = match number(args, "--qos", 1u8)? {
        0 => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    };
    Ok(Target {
        port: number(args, "--port", 0)?,
        input_topic: required(args, "--input")?.to_owned(),
        output_filter: required(args, "--output")?.to_owned(),
        qos,
    })
}

/// One throughput search against an already running broker or system.
fn search_command(args: &[String]) -> Result<(), String> {
    let result = search::search("search", &target_args(args)?)?;
    println!("max zero-loss {:.0}/s", result.max_zero_loss());
    Ok(())
}

/// One load run (`--burst N`, or `--rate R --secs S`) against an already
/// running broker or system.
fn load_command(args: &[String]) -> Result<(), String> {
    let offer = match flag(args, "--burst") {
        Some(_) => Offer::Burst {
            count: number(args, "--burst", 0)?,
        },
        None => Offer::Paced {
            rate: number(args, "--rate", STEADY_RATE)?,
            secs: number(args, "--secs", 5.0)?,
        },
    };
    let result = generator::run(&target_args(args)?, offer)?;
    println!("{}", result.summary());
    Ok(())
}

struct Options {
    ledge: PathBuf,
    repeats: usize,
    latency_secs: f64,
    load_secs: f64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let options = Self {
            ledge: PathBuf::from(flag(args, "--ledge").unwrap_or("target/release/ledge")),
            repeats: number(args, "--repeats", 3)?,
            latency_secs: number(args, "--latency-secs", 5.0)?,
            load_secs: number(args, "--load-secs", 60.0)?,
        };
        if !options.ledge.is_file() {
            return Err(format!(
                "{} does not exist; run cargo build --release",
                options.ledge.display()
            ));
        }
        if options.repeats == 0 || options.latency_secs <= 0.0 || options.load_secs <= 0.0 {
            return Err("--repeats, --latency-secs and --load-secs must be positive".to_owned());
        }
        Ok(options)
    }
}

fn run_all(options: &Options) -> Result<(), String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let dir = dir.path();
    let (stock, stock_port) = procs::mosquitto(dir, false)?;
    let (_nodelay, nodelay_port) = procs::mosquitto(dir, true)?;
    let mut table = Table::default();
    eprintln!("== broker ceilings (mosquitto, the embedded broker with no function)");
    let embedded_ceilings = ceilings(options, dir, stock_port, &mut table)?;
    for repeat in 1..=options.repeats {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let q = qos as u8;
            eprintln!(
                "== QoS {q}: relay and ledge through mosquitto, then ledge on its embedded broker, repeat {repeat} of {}",
                options.repeats
            );
            throughput_round(options, dir, stock_port, qos, &mut table)?;
            embedded_round(options, dir, qos, embedded_ceilings[q as usize], &mut table)?;
        }
    }
    let best = table.median("tput_ledge_qos1").unwrap_or(CPU_RATE);
    eprintln!(
        "== CPU per message at ledge's highest sustained rate ({best:.0}/s) through mosquitto"
    );
    cpu_round(options, dir, (&stock, stock_port), best, &mut table)?;
    for repeat in 1..=options.repeats {
        eprintln!(
            "== latency at {STEADY_RATE}/s, repeat {repeat} of {}",
            options.repeats
        );
        latency_round(options, dir, ("stock", stock_port), &mut table)?;
        latency_round(options, dir, ("nodelay", nodelay_port), &mut table)?;
        embedded_latency(options, dir, &mut table)?;
    }
    eprintln!("== bursts of {BURST} readings at full speed");
    bursts(options, dir, stock_port, &mut table)?;
    eprintln!(
        "== durable ingestion: {FORWARD_BURST} QoS 1 forwards at once into a stock mosquitto"
    );
    // A burst lasts a fifth of a second: single pairs ranged 0.5-2.6x on
    // this VM, so the figure is the median of several, each pair back to back.
    for _ in 0..INGEST_PAIRS {
        forward_ingestion(options, dir, &mut table)?;
    }
    eprintln!("== a good function beside hostile ones, {STEADY_RATE}/s");
    hostile(options, dir, &mut table)?;
    eprintln!("== memory");
    memory(options, dir, stock_port, best, &mut table)?;
    table.print();
    eprintln!(
        "mqtt_load all took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Only the hostile-neighbour run of `all` (a minute): for A/B runs of
/// scheduling changes.
fn run_hostile(options: &Options) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let mut table = Table::default();
    eprintln!("== a good function beside hostile ones, {STEADY_RATE}/s");
    hostile(options, dir.path(), &mut table)?;
    table.print();
    Ok(())
}

/// Only the durable-ingestion run of `all` (seconds), `--repeats` times:
/// the plain subscriber and ledge alternate, so each ratio is one pair.
fn run_ingest(options: &Options) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let mut table = Table::default();
    for repeat in 1..=options.repeats {
        eprintln!(
            "== durable ingestion, repeat {repeat} of {}",
            options.repeats
        );
        forward_ingestion(options, dir.path(), &mut table)?;
    }
    table.print();
    Ok(())
}

/// Readings in each burst run (the issue's floor: 200,000).
const BURST: u64 = 200_000;
/// QoS 1 messages in the durable ingestion run.
const FORWARD_BURST: u64 = 10_000;
/// Plain-subscriber/ledge pairs of that run in `all`.
const INGEST_PAIRS: usize = 5;

fn direct(port: u16, qos: QoS) -> Target {
    Target {
        port,
        input_topic: DIRECT_TOPIC.to_owned(),
        output_filter: DIRECT_TOPIC.to_owned(),
        qos,
    }
}

fn through(port: u16) -> Target {
    through_qos(port, QoS::AtLeastOnce)
}

fn through_qos(port: u16, qos: QoS) -> Target {
    Target {
        port,
        input_topic: READING_TOPIC.to_owned(),
        output_filter: ALERT_FILTER.to_owned(),
        qos,
    }
}

/// The relay as the baseline runs it: TCP_NODELAY on, the best it can do.
fn start_relay(dir: &Path, port: u16, nodelay: bool) -> Result<procs::Proc, String> {
    procs::relay(dir, port, READING_FILTER, ALERT_TOPIC, nodelay)
}

/// ledge running the benchmark's job (reading-relay) through mosquitto.
fn start_ledge(options: &Options, dir: &Path, port: u16) -> Result<procs::Proc, String> {
    procs::ledge(&options.ledge, dir, "relay-job.toml", port)
}

/// ledge running the benchmark's job on its embedded broker; the port.
fn start_embedded(options: &Options, dir: &Path) -> Result<(procs::Proc, u16), String> {
    let port = procs::free_port()?;
    let mut ledge = procs::ledge(&options.ledge, dir, "relay-job-embedded.toml", port)?;
    procs::wait_for_port(&mut ledge, port)?;
    Ok((ledge, port))
}

/// What one publisher can push to one subscriber through each broker,
/// with no function in between: the context for every other figure.
/// Returns the embedded broker's zero-loss rate at QoS 0 and QoS 1.
fn ceilings(
    options: &Options,
    dir: &Path,
    mosquitto: u16,
    table: &mut Table,
) -> Result<[f64; 2], String> {
    let qos1 = search::search("mosquitto qos1", &direct(mosquitto, QoS::AtLeastOnce))?;
    table.search("mosquitto_qos1", "broker only: mosquitto, QoS 1", &qos1);
    let qos0 = search::search("mosquitto qos0", &direct(mosquitto, QoS::AtMostOnce))?;
    table.search("mosquitto_qos0", "broker only: mosquitto, QoS 0", &qos0);

    let port = procs::free_port()?;
    let mut embedded = procs::ledge(&options.ledge, dir, "broker-only.toml", port)?;
    procs::wait_for_port(&mut embedded, port)?;
    let mut rates = [0.0; 2];
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        let q = qos as u8;
        let result = search::search(&format!("embedded qos{q}"), &direct(port, qos));
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                embedded.stop();
                return Err(e);
            }
        };
        rates[q as usize] = result.max_zero_loss();
        table.search(
            &format!("embedded_qos{q}"),
            &format!("broker only: ledge's embedded broker, QoS {q}"),
            &result,
        );
    }
    embedded.stop();
    Ok(rates)
}

/// The relay baseline and ledge, back to back, so that both see the same
/// machine conditions and their ratio is taken within one repeat.
fn throughput_round(
    options: &Options,
    dir: &Path,
    mosquitto: u16,
    qos: QoS,
    table: &mut Table,
) -> Result<(), String> {
    let q = qos as u8;
    let relay = start_relay(dir, mosquitto, true)?;
    let relayed = search::search(&format!("relay qos{q}"), &through_qos(mosquitto, qos));
    relay.stop();
    let relayed = relayed?;
    table.search(
        &format!("relay_qos{q}"),
        &format!("no-wasm relay through mosquitto, QoS {q} in"),
        &relayed,
    );

    let ledge = start_ledge(options, dir, mosquitto)?;
    let e2e = search::search(&format!("ledge qos{q}"), &through_qos(mosquitto, qos));
    let log = ledge.stop();
    let e2e = e2e?;
    table.search(
        &format!("ledge_qos{q}"),
        &format!("ledge (reading-relay) through mosquitto, QoS {q} in"),
        &e2e,
    );
    table.ledge_log(&format!("ledge_qos{q}"), &log);
    table.add(
        &format!("ratio_ledge_relay_qos{q}"),
        e2e.max_zero_loss() / relayed.max_zero_loss().max(1.0),
        "x",
        &format!(
            "ledge / relay max zero-loss through mosquitto, QoS {q} (same repeat); floor 0.80"
        ),
    );
    Ok(())
}

/// ledge on its embedded broker against the embedded broker's own ceiling.
fn embedded_round(
    options: &Options,
    dir: &Path,
    qos: QoS,
    ceiling: f64,
    table: &mut Table,
) -> Result<(), String> {
    let q = qos as u8;
    let (ledge, port) = start_embedded(options, dir)?;
    let result = search::search(&format!("ledge embedded qos{q}"), &through_qos(port, qos));
    let log = ledge.stop();
    let result = result?;
    table.search(
        &format!("ledge_embedded_qos{q}"),
        &format!("ledge (reading-relay) on its embedded broker, QoS {q} in"),
        &result,
    );
    table.ledge_log(&format!("ledge_embedded_qos{q}"), &log);
    table.add(
        &format!("ratio_embedded_ceiling_qos{q}"),
        result.max_zero_loss() / ceiling.max(1.0),
        "x",
        &format!("ledge embedded / embedded broker alone, max zero-loss, QoS {q}; floor 0.60"),
    );
    Ok(())
}

/// CPU time per message of the relay and of ledge (by thread) at `rate`,
/// ledge's highest sustained rate: the issue's floor is ledge ≤ relay +
/// the wasm call's own time (benches/invoke.rs, reading-relay).
fn cpu_round(
    options: &Options,
    dir: &Path,
    (mosquitto, port): (&procs::Proc, u16),
    rate: f64,
    table: &mut Table,
) -> Result<(), String> {
    let relay = start_relay(dir, port, true)?;
    let result = cpu_cost(&relay, mosquitto, port, rate);
    relay.stop();
    table.cpu("relay", rate, &result?);
    let ledge = start_ledge(options, dir, port)?;
    let result = cpu_cost(&ledge, mosquitto, port, rate);
    ledge.stop();
    table.cpu("ledge", rate, &result?);
    Ok(())
}

/// CPU used by `system`, by mosquitto and by the load generator (this
/// process) over one paced run.
struct CpuCost {
    messages: u64,
    system: Vec<procs::ThreadCpu>,
    mosquitto: Vec<procs::ThreadCpu>,
    generator: Vec<procs::ThreadCpu>,
}

fn cpu_cost(
    system: &procs::Proc,
    mosquitto: &procs::Proc,
    port: u16,
    rate: f64,
) -> Result<CpuCost, String> {
    let (system_before, mosquitto_before) = (system.threads(), mosquitto.threads());
    let generator_before = procs::own_threads();
    let offer = Offer::Paced {
        rate,
        secs: CPU_SECS,
    };
    let result = generator::run(&through(port), offer)?;
    eprintln!("  cpu run: {}", result.summary());
    Ok(CpuCost {
        messages: result.received,
        system: delta(&system_before, &system.threads()),
        mosquitto: delta(&mosquitto_before, &mosquitto.threads()),
        generator: delta(&generator_before, &procs::own_threads()),
    })
}

/// Per-thread-name differences between two readings.
fn delta(before: &[procs::ThreadCpu], after: &[procs::ThreadCpu]) -> Vec<procs::ThreadCpu> {
    let mut names: Vec<&str> = after.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let sum = |threads: &[procs::ThreadCpu], name: &str| {
        threads
            .iter()
            .filter(|t| t.name == name)
            .fold((0, 0), |(cpu, sw), t| (cpu + t.cpu_ns, sw + t.switches))
    };
    names
        .into_iter()
        .map(|name| {
            let ((cpu0, sw0), (cpu1, sw1)) = (sum(before, name), sum(after, name));
            procs::ThreadCpu {
                name: name.to_owned(),
                cpu_ns: cpu1.saturating_sub(cpu0),
                switches: sw1.saturating_sub(sw0),
            }
        })
        .collect()
}

/// Latency at `STEADY_RATE` through ledge's embedded broker.
fn embedded_latency(options: &Options, dir: &Path, table: &mut Table) -> Result<(), String> {
    let (ledge, port) = start_embedded(options, dir)?;
    let offer = Offer::Paced {
        rate: STEADY_RATE,
        secs: options.latency_secs,
    };
    let result = generator::run(&through(port), offer);
    ledge.stop();
    table.latency(
        "embedded_ledge",
        "ledge (reading-relay) on its embedded broker, QoS 1",
        &result?,
    );
    Ok(())
}

/// A good function's latency at `STEADY_RATE` on the embedded broker, alone
/// and while hostile functions (a self-feeding loop, a spinner, a log flood,
/// a memory bomb) are triggered over and over beside it: the floor is the
/// same delivered count and at most 2× the p99.
fn hostile(options: &Options, dir: &Path, table: &mut Table) -> Result<(), String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["self_feed", "loop", "deny_flood", "bomb"] {
        let source = repo.join(format!("tests/fixtures/wat/{name}.wat"));
        let wasm = wat::parse_file(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        std::fs::write(dir.join(format!("{name}.wasm")), wasm).map_err(|e| e.to_string())?;
    }
    let port = procs::free_port()?;
    let mut ledge = procs::ledge(&options.ledge, dir, "hostile.toml", port)?;
    procs::wait_for_port(&mut ledge, port)?;
    let offer = Offer::Paced {
        rate: STEADY_RATE,
        secs: options.latency_secs,
    };
    let calm = generator::run(&through(port), offer);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let only = std::env::var("HOSTILE_ONLY").unwrap_or_default();
            let all = ["storm/in", "hostile/spin", "hostile/flood", "hostile/bomb"];
            let topics: Vec<&str> = all
                .iter()
                .copied()
                .filter(|t| only.is_empty() || only.split(',').any(|o| t.contains(o)))
                .collect();
            generator::keep_publishing(port, &topics, &stop)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let attacked = generator::run(&through(port), offer);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let attacks = attacker
        .join()
        .map_err(|_| "the attacker panicked".to_owned())?;
    let log = ledge.stop();
    let (calm, attacked) = (calm?, attacked?);
    eprintln!("  hostile: {attacks} triggers of hostile functions during the attacked run");
    for line in log.lines().filter(|l| l.contains(" invocations, ")) {
        eprintln!("  hostile summary: {line}");
    }
    table.latency("hostile_calm", "good function, hostile ones idle", &calm);
    table.latency(
        "hostile_attacked",
        "good function while hostile ones run",
        &attacked,
    );
    table.add(
        "ratio_hostile_p99",
        attacked.latency_us(0.99) as f64 / (calm.latency_us(0.99) as f64).max(1.0),
        "x",
        "good function's p99 with hostile neighbours / alone; floor 2.0",
    );
    table.add(
        "hostile_delivered_difference",
        calm.received as f64 - attacked.received as f64,
        "msgs",
        "good function: delivered alone minus delivered under attack (same offer); floor 0",
    );
    Ok(())
}

/// `BURST` readings as fast as the publisher's client takes them, into the
/// embedded broker and through mosquitto, at QoS 1 and QoS 0: how many
/// arrive, and what ledge's exit summary says it spilled and dead-lettered.
fn bursts(options: &Options, dir: &Path, mosquitto: u16, table: &mut Table) -> Result<(), String> {
    for qos in [QoS::AtLeastOnce, QoS::AtMostOnce] {
        let q = qos as u8;
        let (ledge, port) = start_embedded(options, dir)?;
        let result = generator::run(&through_qos(port, qos), Offer::Burst { count: BURST });
        let log = ledge.stop();
        table.burst(&format!("burst_embedded_qos{q}"), &result?, &log);
        let ledge = start_ledge(options, dir, mosquitto)?;
        let result = generator::run(&through_qos(mosquitto, qos), Offer::Burst { count: BURST });
        let log = ledge.stop();
        table.burst(&format!("burst_mosquitto_qos{q}"), &result?, &log);
    }
    Ok(())
}

/// `FORWARD_BURST` QoS 1 messages published at once (mosquitto_pub -l -q 1)
/// into a stock mosquitto: how fast ledge takes them durably (each
/// acknowledged only once its record is fsynced; the upstream is down),
/// against a plain QoS 1 subscriber that acknowledges on receipt.
fn forward_ingestion(options: &Options, dir: &Path, table: &mut Table) -> Result<(), String> {
    let (_stock, port) = procs::stock_mosquitto(dir)?;
    // Baseline: a plain subscriber, acknowledging each message on receipt.
    let counter =
        std::thread::spawn(move || generator::count_arrivals(port, "data/#", FORWARD_BURST));
    std::thread::sleep(Duration::from_millis(500));
    mosquitto_pub_lines(port, FORWARD_BURST)?;
    let (received, secs) = counter
        .join()
        .map_err(|_| "the counting subscriber panicked".to_owned())??;
    let plain = received as f64 / secs.max(1e-6);
    table.add(
        "ingest_plain_qos1",
        plain,
        "msg/s",
        "plain QoS 1 subscriber on stock mosquitto: receipt rate of a 10,000-message burst",
    );
    table.add(
        "ingest_plain_received",
        received as f64,
        "msgs",
        "plain subscriber: messages of the burst it received (the rest dropped by mosquitto)",
    );

    let upstream = procs::free_port()?;
    let mut ledge =
        procs::ledge_with_upstream(&options.ledge, dir, "forward.toml", port, upstream)?;
    std::thread::sleep(Duration::from_millis(1500));
    ledge.check_running()?;
    let socket = dir.join(format!("data-forward-{port}")).join("ledge.sock");
    // The burst's publisher runs beside the polling, as the plain
    // subscriber's did: both clocks run from the first message the consumer
    // took to the last, so neither counts mosquitto_pub's start-up.
    let before = spool_status(&socket)?.next_seq;
    let publisher = std::thread::spawn(move || mosquitto_pub_lines(port, FORWARD_BURST));
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut first, mut durable) = (None, 0);
    while Instant::now() < deadline {
        let spool = spool_status(&socket)?;
        let now = Instant::now();
        if spool.next_seq > before {
            first.get_or_insert(now);
        }
        // Records of the burst on flash: seqs from `before` on.
        durable = (spool.synced_through + 1).saturating_sub(before);
        if durable >= FORWARD_BURST {
            break;
        }
        // One status request over ledge's control socket (no process
        // spawn): 5 ms is ±2-3% on a burst of 0.2 s or more.
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = first.map_or(f64::INFINITY, |f| f.elapsed().as_secs_f64());
    publisher
        .join()
        .map_err(|_| "the publishing thread panicked".to_owned())??;
    ledge.stop();
    let rate = durable as f64 / secs;
    table.add("ingest_ledge_forward", rate, "msg/s", "ledge [[forward]] on stock mosquitto: durable (fsynced, then acknowledged) ingestion rate of the burst, default fsync policy");
    table.add(
        "ingest_ledge_stored",
        durable as f64,
        "msgs",
        "ledge: messages of the burst stored durably",
    );
    table.add(
        "ratio_ingest",
        rate / plain.max(1.0),
        "x",
        "ledge durable ingestion / plain QoS 1 subscriber; floor 0.80",
    );
    Ok(())
}

/// `mosquitto_pub -l -q 1` with `n` lines `id:<i>` on `data/burst`.
fn mosquitto_pub_lines(port: u16, n: u64) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "data/burst",
            "-q",
            "1",
            "-l",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("mosquitto_pub: {e}"))?;
    let lines: String = (0..n).map(|id| format!("id:{id}\n")).collect();
    child
        .stdin
        .take()
        .ok_or("mosquitto_pub stdin")?
        .write_all(lines.as_bytes())
        .map_err(|e| format!("mosquitto_pub stdin: {e}"))?;
    let status = child.wait().map_err(|e| format!("mosquitto_pub: {e}"))?;
    if !status.success() {
        return Err(format!("mosquitto_pub failed: {status}"));
    }
    Ok(())
}

/// The spool's sequence counters, as `ledge status` reports them.
struct SpoolStatus {
    /// The next record's sequence number.
    next_seq: u64,
    /// Every record up to this one is on flash (and acknowledged).
    synced_through: u64,
}

/// One `status` request on ledge's control socket (what `ledge status
/// --json` sends), without starting a process per poll.
fn spool_status(socket: &Path) -> Result<SpoolStatus, String> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    stream
        .write_all(b"status\n")
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("status reply: {e}"))?;
    Ok(SpoolStatus {
        next_seq: doc["spool"]["next_seq"].as_u64().unwrap_or(0),
        synced_through: doc["spool"]["synced_through"].as_u64().unwrap_or(0),
    })
}

/// Latency at `STEADY_RATE` through one mosquitto: alone, through the relay
/// (with TCP_NODELAY, and on the nodelay broker also without it, as ledge's
/// link is today), and through ledge.
fn latency_round(
    options: &Options,
    dir: &Path,
    (broker, mosquitto): (&str, u16),
    table: &mut Table,
) -> Result<(), String> {
    let offer = Offer::Paced {
        rate: STEADY_RATE,
        secs: options.latency_secs,
    };
    let note = |what: &str| format!("{what}, {broker} mosquitto");
    let result = generator::run(&direct(mosquitto, QoS::AtLeastOnce), offer)?;
    table.latency(
        &format!("{broker}_direct"),
        &note("mosquitto alone, QoS 1"),
        &result,
    );

    let mut relays = vec![(true, "relay", "no-wasm relay (TCP_NODELAY)")];
    if broker == "nodelay" {
        relays.push((
            false,
            "relay_nagle",
            "no-wasm relay (Nagle on, as ledge's link)",
        ));
    }
    for (nodelay, key, what) in relays {
        let relay = start_relay(dir, mosquitto, nodelay)?;
        let result = generator::run(&through(mosquitto), offer);
        relay.stop();
        table.latency(&format!("{broker}_{key}"), &note(what), &result?);
    }

    let ledge = start_ledge(options, dir, mosquitto)?;
    let result = generator::run(&through(mosquitto), offer);
    ledge.stop();
    table.latency(
        &format!("{broker}_ledge"),
        &note("ledge (threshold-alert)"),
        &result?,
    );
    Ok(())
}

/// Idle resident memory of the quickstart config in both broker modes,
/// then ledge's memory through `load_secs` at its highest sustained rate
/// (`rate`), sampled every `SAMPLE_EVERY`: it must stay flat.
fn memory(
    options: &Options,
    dir: &Path,
    mosquitto: u16,
    rate: f64,
    table: &mut Table,
) -> Result<(), String> {
    let external = procs::ledge(&options.ledge, dir, "quickstart-external.toml", mosquitto)?;
    std::thread::sleep(Duration::from_secs(IDLE_SECS));
    let (rss, hwm) = external.memory_kib()?;
    external.stop();
    table.memory(
        "rss_idle_external",
        "quickstart, external mosquitto, idle",
        rss,
        hwm,
    );

    let port = procs::free_port()?;
    let mut quickstart = procs::ledge(&options.ledge, dir, "quickstart.toml", port)?;
    procs::wait_for_port(&mut quickstart, port)?;
    std::thread::sleep(Duration::from_secs(IDLE_SECS));
    let (rss, hwm) = quickstart.memory_kib()?;
    quickstart.stop();
    table.memory("rss_idle", "quickstart, embedded broker, idle", rss, hwm);

    let (ledge, port) = start_embedded(options, dir)?;
    let samples = load_and_sample(&ledge, &through(port), rate, options.load_secs);
    ledge.stop();
    let (result, samples) = samples?;
    eprintln!("  under load: {}", result.summary());
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Err("no memory samples".to_owned());
    };
    let low = samples.iter().copied().fold(f64::MAX, f64::min);
    let high = samples.iter().copied().fold(0.0, f64::max);
    table.add(
        "rss_load_first",
        *first,
        "MiB",
        &format!("ledge embedded at {rate:.0}/s: VmRSS at the first sample ({SAMPLE_EVERY:?} in)"),
    );
    table.add(
        "rss_load_last",
        *last,
        "MiB",
        &format!(
            "ledge embedded at {rate:.0}/s: VmRSS after {:.0} s",
            options.load_secs
        ),
    );
    table.add(
        "rss_load_spread",
        (high - low) / low.max(1e-6),
        "x",
        "ledge embedded under load: (max - min) / min VmRSS over the samples; floor 0.10",
    );
    table.add(
        "rss_load_lost",
        result.lost() as f64,
        "msgs",
        "ledge embedded under load: readings lost",
    );
    Ok(())
}

/// Runs `rate` for `secs` against `target` on another thread and samples
/// `process`'s resident memory (MiB) every `SAMPLE_EVERY` meanwhile.
fn load_and_sample(
    process: &procs::Proc,
    target: &Target,
    rate: f64,
    secs: f64,
) -> Result<(LoadResult, Vec<f64>), String> {
    let offer = Offer::Paced { rate, secs };
    let target = target.clone();
    let load = std::thread::spawn(move || generator::run(&target, offer));
    let started = Instant::now();
    let mut samples = Vec::new();
    while !load.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() >= SAMPLE_EVERY * (samples.len() as u32 + 1) {
            let (rss, _) = process.memory_kib()?;
            samples.push(rss as f64 / 1024.0);
        }
    }
    eprintln!(
        "  VmRSS MiB every {SAMPLE_EVERY:?}: {}",
        samples
            .iter()
            .map(|m| format!("{m:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let result = load
        .join()
        .map_err(|_| "the load thread panicked".to_owned())??;
    Ok((result, samples))
}

/// Figures collected over the repeats, printed as `result` lines at the end.
#[derive(Default)]
struct Table {
    /// (key, values over repeats, unit, note), in first-seen order.
    rows: Vec<(String, Vec<f64>, String, String)>,
}

impl Table {
    fn add(&mut self, key: &str, value: f64, unit: &str, note: &str) {
        match self.rows.iter_mut().find(|row| row.0 == key) {
            Some(row) => row.1.push(value),
            None => self.rows.push((
                key.to_owned(),
                vec![value],
                unit.to_owned(),
                note.to_owned(),
            )),
        }
    }

    fn search(&mut self, key: &str, note: &str, result: &SearchResult) {
        self.add(
            &format!("tput_{key}"),
            result.max_zero_loss(),
            "msg/s",
            &format!("{note}: max zero-loss paced rate"),
        );
        self.add(
            &format!("burst_{key}"),
            result.burst.completion_rate(),
            "msg/s",
            &format!("{note}: burst of {} completion rate", result.burst.sent),
        );
        self.add(
            &format!("burst_lost_{key}"),
            result.burst.lost() as f64,
            "msgs",
            &format!("{note}: messages lost in the burst"),
        );
    }

    fn latency(&mut self, key: &str, note: &str, result: &LoadResult) {
        eprintln!("  {key} latency: {}", result.summary());
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
            self.add(
                &format!("lat_{key}_{name}"),
                result.latency_us(q) as f64 / 1e3,
                "ms",
                &format!("{note}: {name} at {STEADY_RATE}/s"),
            );
        }
        self.add(
            &format!("lat_lost_{key}"),
            result.lost() as f64,
            "msgs",
            &format!("{note}: lost of {} at {STEADY_RATE}/s", result.sent),
        );
    }

    /// CPU microseconds per message at `rate`: the whole process, each
    /// thread name, and mosquitto; context switches per message.
    fn cpu(&mut self, key: &str, rate: f64, cost: &CpuCost) {
        let per_msg = |ns: u64| ns as f64 / 1e3 / cost.messages.max(1) as f64;
        let total: u64 = cost.system.iter().map(|t| t.cpu_ns).sum();
        let switches: u64 = cost.system.iter().map(|t| t.switches).sum();
        let broker: u64 = cost.mosquitto.iter().map(|t| t.cpu_ns).sum();
        let generator: u64 = cost.generator.iter().map(|t| t.cpu_ns).sum();
        for thread in cost.system.iter().filter(|t| t.cpu_ns > 0) {
            eprintln!(
                "  {key} thread {}: {:.1} µs CPU, {:.2} switches per message",
                thread.name,
                per_msg(thread.cpu_ns),
                thread.switches as f64 / cost.messages.max(1) as f64
            );
            self.add(
                &format!("cpu_{key}_thread_{}", thread.name),
                per_msg(thread.cpu_ns),
                "µs/msg",
                &format!(
                    "{key}: CPU of thread {} per message at {rate:.0}/s",
                    thread.name
                ),
            );
        }
        self.add(
            &format!("cpu_{key}"),
            per_msg(total),
            "µs/msg",
            &format!("{key}: CPU (all threads) per message at {rate:.0}/s"),
        );
        self.add(
            &format!("switches_{key}"),
            switches as f64 / cost.messages.max(1) as f64,
            "/msg",
            &format!("{key}: context switches per message at {rate:.0}/s"),
        );
        self.add(
            &format!("cpu_mosquitto_with_{key}"),
            per_msg(broker),
            "µs/msg",
            &format!("mosquitto CPU per message while serving the {key} run"),
        );
        self.add(
            &format!("cpu_generator_with_{key}"),
            per_msg(generator),
            "µs/msg",
            &format!("load generator CPU per message in the {key} run"),
        );
    }

    /// The median over repeats of a figure added so far.
    fn median(&self, key: &str) -> Option<f64> {
        let (_, values, _, _) = self.rows.iter().find(|row| row.0 == key)?;
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }

    /// One burst: delivered and lost at the subscriber, and what ledge's
    /// exit summary counted as throttled, spilled and dead-lettered.
    fn burst(&mut self, key: &str, result: &LoadResult, log: &str) {
        eprintln!("  {key}: {}", result.summary());
        for line in log.lines().filter(|l| l.contains(" invocations, ")) {
            eprintln!("  {key} summary: {line}");
        }
        let field = |name: &str| summary_field(log, "reading-relay:", name).unwrap_or(0.0);
        self.add(
            &format!("{key}_delivered"),
            result.received as f64,
            "msgs",
            &format!("{key}: readings that came back, of {}", result.sent),
        );
        self.add(
            &format!("{key}_lost"),
            result.lost() as f64,
            "msgs",
            &format!("{key}: readings that did not come back"),
        );
        self.add(
            &format!("{key}_rate"),
            result.completion_rate(),
            "msg/s",
            &format!("{key}: first send to last receipt"),
        );
        self.add(
            &format!("{key}_spilled"),
            field("spilled"),
            "events",
            &format!("{key}: events ledge spilled to the function's stream (exit summary)"),
        );
        self.add(
            &format!("{key}_dead_letters"),
            field("dead_letters"),
            "events",
            &format!("{key}: events ledge dead-lettered (exit summary)"),
        );
        self.add(
            &format!("{key}_invocations"),
            field("invocations"),
            "calls",
            &format!("{key}: invocations (exit summary)"),
        );
    }

    fn memory(&mut self, key: &str, note: &str, rss_kib: u64, hwm_kib: u64) {
        eprintln!("  {key}: VmRSS {rss_kib} KiB, VmHWM {hwm_kib} KiB");
        self.add(
            key,
            rss_kib as f64 / 1024.0,
            "MiB",
            &format!("{note}: VmRSS"),
        );
        let peak = key.replace("rss", "hwm");
        self.add(
            &peak,
            hwm_kib as f64 / 1024.0,
            "MiB",
            &format!("{note}: VmHWM"),
        );
    }

    /// Counts from ledge's log: throttling, refused publishes, and the
    /// per-function summary it logs at exit.
    fn ledge_log(&mut self, key: &str, log: &str) {
        let throttle_lines = log.lines().filter(|l| l.contains("throttled (")).count();
        let dropped = log.lines().filter(|l| l.contains("dropped:")).count();
        for line in log.lines().filter(|l| l.contains(" invocations, ")) {
            eprintln!("  {key} summary: {line}");
        }
        let throttled = summary_field(log, "reading-relay:", "throttled");
        let invocations = summary_field(log, "reading-relay:", "invocations");
        let errors = summary_field(log, "reading-relay:", "errors");
        self.add(
            &format!("{key}_throttled"),
            throttled.unwrap_or(throttle_lines as f64),
            "events",
            "events that found the queue full (from ledge's exit summary)",
        );
        self.add(
            &format!("{key}_publish_refused"),
            dropped as f64,
            "lines",
            "log lines about publishes refused (ERR_UNAVAILABLE)",
        );
        self.add(
            &format!("{key}_invocations"),
            invocations.unwrap_or(0.0),
            "calls",
            "invocations (exit summary)",
        );
        self.add(
            &format!("{key}_errors"),
            errors.unwrap_or(0.0),
            "calls",
            "failed invocations (exit summary)",
        );
    }

    fn print(&self) {
        for (key, values, unit, note) in &self.rows {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            println!(
                "result\t{key}\t{median:.3}\t{:.3}\t{:.3}\t{unit}\t{note}",
                sorted[0],
                sorted[sorted.len() - 1]
            );
        }
    }
}

/// The number before `field` on the summary line that starts with
/// `prefix`, e.g. `threshold-alert: 9000 invocations, 0 errors (0
/// timeouts), 0 throttled, mean 25µs, max 900µs`.
fn summary_field(log: &str, prefix: &str, field: &str) -> Option<f64> {
    let line = log.lines().find_map(|l| {
        let at = l.find(prefix).filter(|_| l.contains(" invocations, "))?;
        Some(&l[at + prefix.len()..])
    })?;
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|pair| pair[1].trim_end_matches(',') == field)
        .and_then(|pair| pair[0].parse().ok())
}
