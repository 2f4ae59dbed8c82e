//! MQTT load benchmarks: broker ceilings, the no-wasm relay baseline, ledge
//! end to end, latency at a steady rate, and ledge's memory under load.
//!
//! `benches/run.sh` is the entry point: it builds `target/release/ledge` and
//! runs `mqtt_load all --ledge target/release/ledge`. Subcommands:
//!
//! ```text
//! mqtt_load all --ledge PATH [--repeats N] [--latency-secs S] [--load-secs S]
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
/// How long the external-broker config runs under load (ledge alone, to
/// compare with the embedded broker's growth), and how often memory is read.
const EXTERNAL_LOAD_SECS: f64 = 30.0;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How long ledge sits idle before its idle memory is read.
const IDLE_SECS: u64 = 5;
/// The relay's lifetime if nobody stops it.
const RELAY_LIFETIME: Duration = Duration::from_secs(900);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("all") => Options::parse(&args[1..]).and_then(|o| run_all(&o)),
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
    eprintln!("== broker ceilings (stock mosquitto, embedded broker)");
    ceilings(options, dir, stock_port, &mut table)?;
    for repeat in 1..=options.repeats {
        eprintln!(
            "== relay and ledge through stock mosquitto, repeat {repeat} of {}",
            options.repeats
        );
        throughput_round(options, dir, stock_port, &mut table)?;
    }
    eprintln!("== CPU per message at {CPU_RATE}/s through stock mosquitto");
    cpu_round(options, dir, (&stock, stock_port), &mut table)?;
    for repeat in 1..=options.repeats {
        eprintln!(
            "== latency at {STEADY_RATE}/s, repeat {repeat} of {}",
            options.repeats
        );
        latency_round(options, dir, ("stock", stock_port), &mut table)?;
        latency_round(options, dir, ("nodelay", nodelay_port), &mut table)?;
    }
    eprintln!("== memory");
    memory(options, dir, stock_port, &mut table)?;
    table.print();
    eprintln!(
        "mqtt_load all took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn direct(port: u16, qos: QoS) -> Target {
    Target {
        port,
        input_topic: DIRECT_TOPIC.to_owned(),
        output_filter: DIRECT_TOPIC.to_owned(),
        qos,
    }
}

fn through(port: u16) -> Target {
    Target {
        port,
        input_topic: READING_TOPIC.to_owned(),
        output_filter: ALERT_FILTER.to_owned(),
        qos: QoS::AtLeastOnce,
    }
}

/// The relay as the baseline runs it: TCP_NODELAY on, the best it can do.
fn start_relay(dir: &Path, port: u16, nodelay: bool) -> Result<procs::Proc, String> {
    procs::relay(dir, port, READING_FILTER, ALERT_TOPIC, nodelay)
}

fn start_ledge(options: &Options, dir: &Path, port: u16) -> Result<procs::Proc, String> {
    procs::ledge(&options.ledge, dir, "threshold-alert.toml", port)
}

/// What one publisher can push to one subscriber through each broker,
/// with no ledge in between: the context for every other figure.
fn ceilings(
    options: &Options,
    dir: &Path,
    mosquitto: u16,
    table: &mut Table,
) -> Result<(), String> {
    let qos1 = search::search("mosquitto qos1", &direct(mosquitto, QoS::AtLeastOnce))?;
    table.search("mosquitto_qos1", "broker only: mosquitto, QoS 1", &qos1);
    let qos0 = search::search("mosquitto qos0", &direct(mosquitto, QoS::AtMostOnce))?;
    table.search("mosquitto_qos0", "broker only: mosquitto, QoS 0", &qos0);

    let port = procs::free_port()?;
    let mut embedded = procs::ledge(&options.ledge, dir, "broker-only.toml", port)?;
    procs::wait_for_port(&mut embedded, port)?;
    let result = search::search("embedded qos1", &direct(port, QoS::AtLeastOnce));
    embedded.stop();
    table.search(
        "embedded_qos1",
        "broker only: ledge's embedded rumqttd, QoS 1",
        &result?,
    );
    Ok(())
}

/// The relay baseline and ledge, back to back, so that both see the same
/// machine conditions and their ratio is taken within one repeat.
fn throughput_round(
    options: &Options,
    dir: &Path,
    mosquitto: u16,
    table: &mut Table,
) -> Result<(), String> {
    let relay = start_relay(dir, mosquitto, true)?;
    let relayed = search::search("relay", &through(mosquitto));
    relay.stop();
    let relayed = relayed?;
    table.search("relay", "no-wasm relay through mosquitto, QoS 1", &relayed);

    let ledge = start_ledge(options, dir, mosquitto)?;
    let e2e = search::search("ledge", &through(mosquitto));
    let log = ledge.stop();
    let e2e = e2e?;
    table.search(
        "ledge",
        "ledge end to end (threshold-alert) through mosquitto, QoS 1",
        &e2e,
    );
    table.ledge_log("ledge", &log);
    table.add(
        "ratio_ledge_relay",
        e2e.max_zero_loss() / relayed.max_zero_loss().max(1.0),
        "x",
        "ledge / relay max zero-loss (same repeat); floor 0.70",
    );
    Ok(())
}

/// CPU time per message of the relay, ledge (by thread) and mosquitto at a
/// rate both sustain: where the time goes.
fn cpu_round(
    options: &Options,
    dir: &Path,
    (mosquitto, port): (&procs::Proc, u16),
    table: &mut Table,
) -> Result<(), String> {
    let relay = start_relay(dir, port, true)?;
    let result = cpu_cost(&relay, mosquitto, port);
    relay.stop();
    table.cpu("relay", &result?);
    let ledge = start_ledge(options, dir, port)?;
    let result = cpu_cost(&ledge, mosquitto, port);
    ledge.stop();
    table.cpu("ledge", &result?);
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

fn cpu_cost(system: &procs::Proc, mosquitto: &procs::Proc, port: u16) -> Result<CpuCost, String> {
    let (system_before, mosquitto_before) = (system.threads(), mosquitto.threads());
    let generator_before = procs::own_threads();
    let offer = Offer::Paced {
        rate: CPU_RATE,
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

/// Resident memory of the quickstart-like config, with an external broker
/// (ledge alone) and with the embedded broker (ledge plus rumqttd): idle,
/// then under `STEADY_RATE` readings, sampled every `SAMPLE_EVERY`.
fn memory(options: &Options, dir: &Path, mosquitto: u16, table: &mut Table) -> Result<(), String> {
    let external = procs::ledge(&options.ledge, dir, "quickstart-external.toml", mosquitto)?;
    std::thread::sleep(Duration::from_secs(IDLE_SECS));
    let (rss, hwm) = external.memory_kib()?;
    table.memory(
        "rss_idle_external",
        "quickstart, external mosquitto, idle",
        rss,
        hwm,
    );
    let loaded = load_and_sample(&external, &through(mosquitto), EXTERNAL_LOAD_SECS);
    let (rss, hwm) = external.memory_kib()?;
    external.stop();
    loaded?;
    table.memory(
        "rss_load_external",
        &format!(
            "quickstart, external mosquitto, after {EXTERNAL_LOAD_SECS:.0} s at {STEADY_RATE}/s"
        ),
        rss,
        hwm,
    );

    let port = procs::free_port()?;
    let mut quickstart = procs::ledge(&options.ledge, dir, "quickstart.toml", port)?;
    procs::wait_for_port(&mut quickstart, port)?;
    std::thread::sleep(Duration::from_secs(IDLE_SECS));
    let (rss, hwm) = quickstart.memory_kib()?;
    table.memory("rss_idle", "quickstart, embedded broker, idle", rss, hwm);
    let loaded = load_and_sample(&quickstart, &through(port), options.load_secs);
    let (rss, hwm) = quickstart.memory_kib()?;
    let log = quickstart.stop();
    let result = loaded?;
    table.memory(
        "rss_load",
        &format!(
            "quickstart, embedded broker, after {:.0} s at {STEADY_RATE}/s",
            options.load_secs
        ),
        rss,
        hwm,
    );
    table.latency(
        "embedded_ledge",
        "ledge (quickstart) through its embedded broker",
        &result,
    );
    table.ledge_log("ledge_quickstart", &log);
    Ok(())
}

/// Runs `STEADY_RATE` for `secs` against `target` on another thread and
/// logs `process`'s resident memory every `SAMPLE_EVERY` meanwhile.
fn load_and_sample(
    process: &procs::Proc,
    target: &Target,
    secs: f64,
) -> Result<LoadResult, String> {
    let offer = Offer::Paced {
        rate: STEADY_RATE,
        secs,
    };
    let target = target.clone();
    let load = std::thread::spawn(move || generator::run(&target, offer));
    let started = Instant::now();
    let mut samples = Vec::new();
    while !load.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() >= SAMPLE_EVERY * (samples.len() as u32 + 1) {
            let (rss, _) = process.memory_kib()?;
            samples.push(format!(
                "{:.0}s {:.1}",
                started.elapsed().as_secs_f64(),
                rss as f64 / 1024.0
            ));
        }
    }
    eprintln!("  VmRSS MiB under load: {}", samples.join(", "));
    load.join()
        .map_err(|_| "the load thread panicked".to_owned())?
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

    /// CPU microseconds per message: the whole process, each thread name,
    /// and mosquitto; context switches per message for the process.
    fn cpu(&mut self, key: &str, cost: &CpuCost) {
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
                    "{key}: CPU of thread {} per message at {CPU_RATE}/s",
                    thread.name
                ),
            );
        }
        self.add(
            &format!("cpu_{key}"),
            per_msg(total),
            "µs/msg",
            &format!("{key}: CPU (all threads) per message at {CPU_RATE}/s"),
        );
        self.add(
            &format!("switches_{key}"),
            switches as f64 / cost.messages.max(1) as f64,
            "/msg",
            &format!("{key}: context switches per message at {CPU_RATE}/s"),
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
        let throttled = summary_field(log, "threshold-alert:", "throttled");
        let invocations = summary_field(log, "threshold-alert:", "invocations");
        let errors = summary_field(log, "threshold-alert:", "errors");
        self.add(
            &format!("{key}_throttled"),
            throttled.unwrap_or(throttle_lines as f64),
            "events",
            "threshold-alert events throttled (from ledge's exit summary)",
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
            "threshold-alert invocations (exit summary)",
        );
        self.add(
            &format!("{key}_errors"),
            errors.unwrap_or(0.0),
            "calls",
            "threshold-alert failed invocations (exit summary)",
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
