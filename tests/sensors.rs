//! Sensor sources against a fake sysfs tree (`sysfs_root`): a DS18B20 on
//! 1-wire with a deadband, a CRC failure and an unplugged sensor becoming
//! rate-limited error events, recovery; an IIO channel, a thermal zone and
//! a simulated sensor, side by side, none blocking another.

mod common;

use std::path::Path;
use std::time::Duration;

use common::broker::TestClient;
use common::process::Ledge;

const WAIT: Duration = Duration::from_secs(20);
const GOOD: &str = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=";

fn w1(root: &Path, millidegrees: i64, crc_ok: bool) {
    let dir = root.join("bus/w1/devices/28-00000a1b2c3d");
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!("{GOOD}{millidegrees}\n");
    let text = if crc_ok {
        text
    } else {
        text.replace("YES", "NO")
    };
    // Write then rename, as the kernel presents a whole file.
    std::fs::write(dir.join("w1_slave.tmp"), text).unwrap();
    std::fs::rename(dir.join("w1_slave.tmp"), dir.join("w1_slave")).unwrap();
}

#[test]
fn sysfs_sensors_report_changes_errors_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    w1(&root, 21_000, true);
    let iio = root.join("bus/iio/devices/iio:device0");
    std::fs::create_dir_all(&iio).unwrap();
    std::fs::write(iio.join("in_humidityrelative_raw"), "45000\n").unwrap();
    std::fs::write(iio.join("in_humidityrelative_scale"), "0.001\n").unwrap();
    let zone = root.join("class/thermal/thermal_zone1");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("temp"), "48312\n").unwrap();

    let port = common::free_port();
    let text = format!(
        "[device]\nid = \"s1\"\ndata_dir = \"data\"\n[broker]\nembedded = true\nlisten = \"127.0.0.1:{port}\"\n\
         [[sensor]]\nname = \"tank\"\nkind = \"w1\"\ndevice = \"28-00000a1b2c3d\"\nsysfs_root = \"sys\"\ninterval = \"100ms\"\nunit = \"C\"\nreport = \"change\"\ndeadband = 0.5\npublish = true\n\
"
    );
    let config = common::write_config(dir.path(), &text);
    let mut ledge = Ledge::spawn(&config, &[]);
    ledge.wait_for_line("running as `s1`", WAIT);
    let client = TestClient::connect(port, "sensor-client", &["sensors/+/reading"]);

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
    std::fs::remove_file(root.join("bus/w1/devices/28-00000a1b2c3d/w1_slave")).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    let iio = root.join("bus/iio/devices/iio:device0");
    std::fs::create_dir_all(&iio).unwrap();
    std::fs::write(iio.join("in_humidityrelative_raw"), "45000\n").unwrap();
    std::fs::write(iio.join("in_humidityrelative_scale"), "0.001\n").unwrap();
    let zone = root.join("class/thermal/thermal_zone1");
    std::fs::create_dir_all(&zone).unwrap();
    std::fs::write(zone.join("temp"), "58000\n").unwrap();
    let port = common::free_port();
    let text = format!(
        "[device]\nid = \"s2\"\ndata_dir = \"data\"\n[broker]\nembedded = true\nlisten = \"127.0.0.1:{port}\"\n\
         [[sensor]]\nname = \"hum\"\nkind = \"iio\"\ndevice = \"iio:device0\"\nchannel = \"in_humidityrelative\"\nsysfs_root = \"sys\"\ninterval = \"100ms\"\nreport = \"change\"\npublish = true\n\
         [[sensor]]\nname = \"soc\"\nkind = \"thermal\"\nzone = 1\nsysfs_root = \"sys\"\ninterval = \"100ms\"\nreport = \"threshold\"\nthreshold = 60.0\nhysteresis = 2.0\npublish = true\n\
         [[sensor]]\nname = \"sim\"\nkind = \"simulated\"\nwaveform = \"square\"\nmin = 0.0\nmax = 1.0\nperiod = \"400ms\"\ninterval = \"50ms\"\nreport = \"change\"\npublish = true\n"
    );
    let config = common::write_config(dir.path(), &text);
    let mut ledge = Ledge::spawn(&config, &[]);
    ledge.wait_for_line("running as `s2`", WAIT);
    let client = TestClient::connect(port, "sensor-client-2", &["sensors/+/reading"]);
    std::thread::sleep(Duration::from_millis(300));
    // 58 °C, then 61 (crossing up), 59 (inside the hysteresis), 57.9 (down).
    for milli in ["61000", "59000", "57900"] {
        std::fs::write(zone.join("temp"), format!("{milli}\n")).unwrap();
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
