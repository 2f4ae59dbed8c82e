//! Sensor sources against a fake sysfs tree (`sysfs_root`): a DS18B20 on
//! 1-wire with a deadband, a CRC failure and an unplugged sensor becoming
//! rate-limited error events, recovery; an IIO channel, a thermal zone and
//! a simulated sensor, side by side, none blocking another. A BME280 on
//! I2C (the register-map fake bus): temperature, pressure and humidity
//! from one chip, compensated with its calibration; a new measurement is
//! read each sample; a BMP280 asked for humidity, a wrong chip id, a silent
//! address and a missing bus become error events.

use std::time::Duration;

use crate::common::fake_hw::{
    bme280_registers, iio_channel, install_i2c_chip, thermal_zone, w1, W1_DEVICE,
};
use crate::common::gateway::Gateway;
use crate::common::process::Ledge;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn sysfs_sensors_report_changes_errors_and_recovery() {
    let gateway = Gateway::new("s1").append(&format!(
        "[[sensor]]\nname = \"tank\"\nkind = \"w1\"\ndevice = \"{W1_DEVICE}\"\nsysfs_root = \"sys\"\ninterval = \"100ms\"\nunit = \"C\"\nreport = \"change\"\ndeadband = 0.5\npublish = true"
    ));
    let root = gateway.dir().join("sys");
    w1(&root, 21_000, true);
    iio_channel(
        &root,
        "iio:device0",
        "in_humidityrelative",
        "45000",
        "0.001",
    );
    thermal_zone(&root, 1, 48312);

    let mut ledge = Ledge::spawn(&gateway.write(), &[]);
    ledge.wait_for_line("running as `s1`", WAIT);
    let client = gateway.client("sensor-client", &["sensors/+/reading"]);

    let next_for = |name: &str| -> serde_json::Value {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Some(m) = client.next(Duration::from_millis(500)) {
                if m.topic == format!("sensors/{name}/reading") {
                    return m.json();
                }
            }
        }
        panic!("no reading from {name}");
    };

    // Changes only. 22.0 moves beyond the deadband, 22.3 does not, 23.0
    // does. The first reading, 21.0, usually comes before the client has
    // subscribed; on a loaded machine it may come after, and is skipped.
    std::thread::sleep(Duration::from_millis(300));
    w1(&root, 22_000, true);
    let mut moved = next_for("tank");
    if moved["value"].as_f64() == Some(21.0) {
        moved = next_for("tank");
    }
    assert_eq!(
        (moved["value"].as_f64(), moved["unit"].as_str()),
        (Some(22.0), Some("C"))
    );
    assert_eq!(moved["quality"], "ok");
    w1(&root, 22_300, true);
    std::thread::sleep(Duration::from_millis(400));
    w1(&root, 23_000, true);
    let moved = next_for("tank");
    assert_eq!(
        moved["value"].as_f64(),
        Some(23.0),
        "22.3 was within the deadband"
    );

    // A bad CRC is an error event, not a reading; then the sensor goes away:
    // no flood of events (the next error event is a minute away).
    w1(&root, 25_000, false);
    let error = next_for("tank");
    assert_eq!(error["quality"], "error", "{error}");
    assert!(error["error"].as_str().unwrap().contains("CRC"), "{error}");
    std::fs::remove_file(root.join("bus/w1/devices").join(W1_DEVICE).join("w1_slave")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let tank_events = client
        .drain(Duration::from_millis(300))
        .into_iter()
        .filter(|m| m.topic == "sensors/tank/reading")
        .count();
    assert_eq!(tank_events, 0, "a failing sensor flooded events");
    // Back: readings resume.
    w1(&root, 24_000, true);
    let back = next_for("tank");
    assert_eq!(back["value"].as_f64(), Some(24.0), "{back}");
    ledge.wait_for_log("reading again after", WAIT);

    let log = ledge.log_text();
    assert!(log.contains("CRC check failed"), "{log}");
    drop(ledge);
}

#[test]
fn iio_thermal_and_simulated_readings_arrive_with_their_policies() {
    let gateway = Gateway::new("s2").append(
        "[[sensor]]\nname = \"hum\"\nkind = \"iio\"\ndevice = \"iio:device0\"\nchannel = \"in_humidityrelative\"\nsysfs_root = \"sys\"\ninterval = \"100ms\"\nreport = \"change\"\npublish = true\n\
         [[sensor]]\nname = \"soc\"\nkind = \"thermal\"\nzone = 1\nsysfs_root = \"sys\"\ninterval = \"100ms\"\nreport = \"threshold\"\nthreshold = 60.0\nhysteresis = 2.0\npublish = true\n\
         [[sensor]]\nname = \"sim\"\nkind = \"simulated\"\nwaveform = \"square\"\nmin = 0.0\nmax = 1.0\nperiod = \"400ms\"\ninterval = \"50ms\"\nreport = \"change\"\npublish = true",
    );
    let root = gateway.dir().join("sys");
    iio_channel(
        &root,
        "iio:device0",
        "in_humidityrelative",
        "45000",
        "0.001",
    );
    thermal_zone(&root, 1, 58000);
    let mut ledge = Ledge::spawn(&gateway.write(), &[]);
    ledge.wait_for_line("running as `s2`", WAIT);
    let client = gateway.client("sensor-client-2", &["sensors/+/reading"]);
    std::thread::sleep(Duration::from_millis(300));
    // 58 °C, then 61 (crossing up), 59 (inside the hysteresis), 57.9 (down).
    for milli in [61000, 59000, 57900] {
        thermal_zone(&root, 1, milli);
        std::thread::sleep(Duration::from_millis(400));
    }
    std::thread::sleep(Duration::from_millis(400));
    let got: Vec<(String, f64)> = client
        .collect(10_000, Duration::from_millis(300))
        .iter()
        .map(|m| {
            (
                m.topic.clone(),
                m.json()["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    let soc: Vec<f64> = got
        .iter()
        .filter(|(t, _)| t == "sensors/soc/reading")
        .map(|(_, v)| *v)
        .collect();
    // The first reading may have come before the client subscribed.
    assert_eq!(
        soc.iter().rev().take(2).rev().copied().collect::<Vec<_>>(),
        vec![61.0, 57.9],
        "{soc:?}"
    );
    let sim: Vec<f64> = got
        .iter()
        .filter(|(t, _)| t == "sensors/sim/reading")
        .map(|(_, v)| *v)
        .collect();
    assert!(
        sim.len() >= 4,
        "a square wave changes every 200 ms: {sim:?}"
    );
    assert!(
        sim.windows(2).all(|w| w[0] != w[1]),
        "change reports only changes: {sim:?}"
    );
    let hum = got
        .iter()
        .filter(|(t, _)| t == "sensors/hum/reading")
        .count();
    assert!(hum <= 1, "humidity did not change: {hum} events");
    drop(ledge);
}

/// A `bme280` sensor table.
fn sensor(name: &str, bus: &str, address: &str, measure: &str) -> String {
    format!(
        "[[sensor]]\nname = \"{name}\"\nkind = \"bme280\"\nbus = {bus}\naddress = {address}\nmeasure = \"{measure}\"\ninterval = \"200ms\"\npublish = true\n"
    )
}

#[test]
fn a_bme280_on_the_fake_bus_reports_compensated_readings_and_errors() {
    let gateway = Gateway::new("i1");
    let bus = gateway.dir().join("i2c-1");
    install_i2c_chip(
        &bus,
        0x76,
        &bme280_registers(0x60, 519_888, 415_148, 30_000),
    );
    // A BMP280 (no humidity) at 0x77.
    install_i2c_chip(&bus, 0x77, &bme280_registers(0x58, 519_888, 415_148, 0));
    let mut text = String::new();
    // A chip that is not a BME280 at 0x74; nothing at 0x75.
    install_i2c_chip(&bus, 0x74, &bme280_registers(0x99, 519_888, 415_148, 0));
    for (name, address, measure) in [
        ("t", "0x76", "temperature"),
        ("p", "0x76", "pressure"),
        ("h", "0x76", "humidity"),
        ("bmp-p", "0x77", "pressure"),
        ("bmp-h", "0x77", "humidity"),
        ("nobody", "0x75", "temperature"),
        ("other", "0x74", "temperature"),
    ] {
        text += &sensor(name, "\"i2c-1\"", address, measure);
    }
    text += &sensor("nobus", "\"i2c-9\"", "0x76", "temperature");
    let gateway = gateway.append(&text);
    let mut ledge = Ledge::spawn(&gateway.write(), &[]);
    ledge.wait_for_line("running as `i1`", WAIT);
    let client = gateway.client("i2c-client", &["sensors/+/reading"]);

    let next_for = |name: &str, want: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let deadline = std::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            if let Some(m) = client.next(Duration::from_millis(500)) {
                if m.topic == format!("sensors/{name}/reading") {
                    let value = m.json();
                    if want(&value) {
                        return value;
                    }
                    seen.push(value);
                }
            }
        }
        panic!("no matching reading from {name}; saw {seen:?}");
    };
    let any = |_: &serde_json::Value| true;

    let t = next_for("t", &any);
    assert_eq!(
        (t["value"].as_f64(), t["unit"].as_str()),
        (Some(25.08), Some("C")),
        "{t}"
    );
    let p = next_for("p", &any);
    let hpa = p["value"].as_f64().unwrap();
    assert!((hpa - 1006.5327).abs() < 0.001, "{p}");
    assert_eq!(p["unit"], "hPa");
    let h = next_for("h", &any);
    assert_eq!(h["value"].as_f64(), Some(56_317.0 / 1024.0), "{h}");
    assert_eq!(h["unit"], "%");
    // The BMP280 measures pressure.
    let bmp = next_for("bmp-p", &any);
    assert_eq!(
        (bmp["quality"].as_str(), bmp["value"].as_f64()),
        (Some("ok"), Some(hpa)),
        "{bmp}"
    );

    // A new measurement: the raw temperature moves, so does the reading.
    // (530000 is about 28.25 °C.)
    install_i2c_chip(
        &bus,
        0x76,
        &bme280_registers(0x60, 530_000, 415_148, 30_000),
    );
    let warmer = next_for("t", &|v| v["value"].as_f64() != Some(25.08));
    let degrees = warmer["value"].as_f64().unwrap();
    assert!((28.0..28.5).contains(&degrees), "{warmer}");

    // The chip goes away: an error event; it comes back: readings again.
    std::fs::remove_file(bus.join("0x76")).unwrap();
    let gone = next_for("t", &|v| v["quality"] == "error");
    assert!(
        gone["error"]
            .as_str()
            .unwrap()
            .contains("no answer from address 0x76"),
        "{gone}"
    );
    assert!(gone["value"].is_null());
    install_i2c_chip(
        &bus,
        0x76,
        &bme280_registers(0x60, 519_888, 415_148, 30_000),
    );
    let back = next_for("t", &|v| v["quality"] == "ok");
    assert_eq!(back["value"].as_f64(), Some(25.08), "{back}");

    // Failures present from the start (their error events came before this
    // client subscribed; the log has them).
    let log = ledge.log_text();
    for expected in [
        "sensor bmp-h: the chip at 0x77 is a BMP280, which has no humidity sensor",
        "sensor nobody: no answer from address 0x75",
        "sensor other: chip id 0x99 at 0x74 is not a BME280 (0x60) or BMP280 (0x58)",
        "sensor nobus: I2C bus",
    ] {
        assert!(log.contains(expected), "missing {expected:?} in:\n{log}");
    }
    assert!(log.contains("i2c-9 not present"), "{log}");
    assert!(ledge.terminate().success());
}
