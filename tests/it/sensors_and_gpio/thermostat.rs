//! examples/thermostat, run as shipped (paths and ports swapped for a fake
//! 1-wire tree and the fake GPIO chip): the relay switches on below LOW,
//! off above HIGH, holds in between, goes off on a sensor error, and the
//! readings and alerts wait in the spool while upstream is unreachable.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::fake_hw;
use crate::common::process::Ledge;

const WAIT: Duration = Duration::from_secs(20);

/// The example's DS18B20 reads `celsius`.
fn temperature(root: &Path, celsius: f64, crc_ok: bool) {
    fake_hw::w1(root, (celsius * 1000.0).round() as i64, crc_ok);
}

/// The example's config with the gateway's paths replaced by test ones.
fn config(dir: &Path) -> std::path::PathBuf {
    let mut text =
        std::fs::read_to_string(common::repo().join("examples/thermostat/ledge.toml")).unwrap();
    let module = common::example("thermostat");
    let swaps = [
        (
            "data_dir = \"/var/lib/ledge\"",
            "data_dir = \"data\"\ngpio_fake = \"gpio\"".to_owned(),
        ),
        (
            "interval = \"10s\"",
            "interval = \"100ms\"\nsysfs_root = \"sys\"".to_owned(),
        ),
        (
            "module = \"../../functions/dist/thermostat.wasm\"",
            format!("module = \"{}\"", module.display()),
        ),
    ];
    for (from, to) in swaps {
        assert!(text.contains(from), "the example no longer has {from}");
        text = text.replace(from, &to);
    }
    // Upstream is down the whole time: the relay must not care.
    let dead = common::free_port();
    text += &format!(
        "\n[broker]\nlisten = \"127.0.0.1:{}\"\n[upstream]\nurl = \"mqtt://127.0.0.1:{dead}\"\n",
        common::free_port()
    );
    common::write_config(dir, &text)
}

struct Heater<'a> {
    ledge: &'a Ledge,
    relay: std::path::PathBuf,
}

impl Heater<'_> {
    fn invocations(&self) -> usize {
        self.ledge
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                l.contains("ledge::invoke") && l.contains("thermostat") && l.contains(" ok in ")
            })
            .count()
    }

    /// Whether the heater is on once the function has seen the new
    /// temperature a few times (the relay is active-low: on is "0").
    fn settles_at(&self, root: &Path, celsius: f64) -> bool {
        let before = self.invocations();
        temperature(root, celsius, true);
        self.wait_for_invocations(before + 3);
        std::fs::read_to_string(&self.relay).unwrap().trim() == "0"
    }

    fn wait_for_invocations(&self, count: usize) {
        let deadline = Instant::now() + WAIT;
        while self.invocations() < count {
            assert!(
                Instant::now() < deadline,
                "thermostat not invoked; log:\n{}",
                self.ledge.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn the_relay_follows_the_temperature_with_hysteresis_offline() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    temperature(&root, 20.0, true);
    let config = config(dir.path());
    let mut ledge = Ledge::spawn(&config, &[]);
    ledge.wait_for_line("running as `thermostat`", WAIT);
    let heater = Heater {
        ledge: &ledge,
        relay: dir.path().join("gpio/pinctrl-bcm2711/17"),
    };
    heater.wait_for_invocations(2);
    assert_eq!(
        std::fs::read_to_string(&heater.relay).unwrap().trim(),
        "1",
        "off (high) at start"
    );

    let steps = [
        (20.0, false, "between the thresholds, off stays off"),
        (18.5, true, "below LOW: on"),
        (20.0, true, "between: on stays on"),
        (21.0, true, "at HIGH: still on"),
        (21.5, false, "above HIGH: off"),
        (20.0, false, "between: off stays off"),
        (19.0, false, "at LOW: still off"),
        (18.9, true, "below LOW: on again"),
    ];
    for (celsius, on, why) in steps {
        assert_eq!(
            heater.settles_at(&root, celsius),
            on,
            "{why} ({celsius} °C)"
        );
    }
    // No flapping: exactly the three switches above, each logged once.
    let switches: Vec<String> = ledge
        .log_text()
        .lines()
        .filter(|l| l.contains("fn::thermostat") && l.contains("heater o"))
        .map(str::to_owned)
        .collect();
    assert_eq!(switches.len(), 3, "{switches:#?}");

    // A failing sensor: heater off, and an alert.
    temperature(&root, 18.0, false);
    let relay = heater.relay.clone();
    drop(heater);
    ledge.wait_for_log("sensor failed, heater off", WAIT);
    assert_eq!(std::fs::read_to_string(&relay).unwrap().trim(), "1");
    assert!(ledge.terminate().success());

    // Upstream never answered: readings and the four alerts are in the spool.
    let output = common::process::ledge(&[
        "spool",
        "dump",
        "--config",
        config.to_str().unwrap(),
        "--kind",
        "event",
    ]);
    let dump = String::from_utf8_lossy(&output.stdout);
    let alerts = dump
        .lines()
        .filter(|l| l.contains("/events/thermostat/alerts\""))
        .count();
    let readings = dump
        .lines()
        .filter(|l| l.contains("/events/thermostat/readings\""))
        .count();
    assert_eq!(alerts, 4, "{dump}");
    assert!(readings >= 20, "{readings} readings spooled:\n{dump}");
}
