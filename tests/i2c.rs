//! A BME280 on I2C through the real binary, on the register-map fake bus
//! (`bus` pointing at a directory): temperature, pressure and humidity from
//! one chip, compensated with its calibration; a new measurement is read
//! each sample; a BMP280 asked for humidity, a wrong chip id, a silent
//! address and a missing bus become error events; bad keys are located.

mod common;

use std::path::Path;
use std::time::Duration;

use common::broker::TestClient;
use common::process::{ledge, Ledge};

const WAIT: Duration = Duration::from_secs(20);

/// The BMP280 datasheet's example calibration (section 3.12) plus typical
/// BME280 humidity trimming, as the chip's registers.
fn register_map(chip_id: u8, raw_t: u32, raw_p: u32, raw_h: u16) -> Vec<u8> {
    let mut map = vec![0u8; 256];
    map[0xd0] = chip_id;
    let words: [i32; 12] = [
        27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000,
    ];
    for (i, w) in words.iter().enumerate() {
        let bytes = (*w as i16 as u16).to_le_bytes();
        map[0x88 + 2 * i] = bytes[0];
        map[0x89 + 2 * i] = bytes[1];
    }
    map[0xa1] = 75; // H1
                    // H2 = 362, H3 = 0, H4 = 313, H5 = 50, H6 = 30.
    map[0xe1..=0xe7].copy_from_slice(&[0x6a, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1e]);
    map[0xf7] = (raw_p >> 12) as u8;
    map[0xf8] = (raw_p >> 4) as u8;
    map[0xf9] = (raw_p << 4) as u8;
    map[0xfa] = (raw_t >> 12) as u8;
    map[0xfb] = (raw_t >> 4) as u8;
    map[0xfc] = (raw_t << 4) as u8;
    map[0xfd..=0xfe].copy_from_slice(&raw_h.to_be_bytes());
    map
}

fn install(bus: &Path, address: u8, map: &[u8]) {
    std::fs::create_dir_all(bus).unwrap();
    let tmp = bus.join("tmp");
    std::fs::write(&tmp, map).unwrap();
    std::fs::rename(&tmp, bus.join(format!("0x{address:02x}"))).unwrap();
}

fn sensor(name: &str, bus: &str, address: &str, measure: &str) -> String {
    format!(
        "[[sensor]]\nname = \"{name}\"\nkind = \"bme280\"\nbus = {bus}\naddress = {address}\nmeasure = \"{measure}\"\ninterval = \"200ms\"\npublish = true\n"
    )
}

#[test]
fn a_bme280_on_the_fake_bus_reports_compensated_readings_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bus = dir.path().join("i2c-1");
    install(&bus, 0x76, &register_map(0x60, 519_888, 415_148, 30_000));
    // A BMP280 (no humidity) at 0x77.
    install(&bus, 0x77, &register_map(0x58, 519_888, 415_148, 0));
    let port = common::free_port();
    let mut text = format!(
        "[device]\nid = \"i1\"\ndata_dir = \"data\"\n[broker]\nembedded = true\nlisten = \"127.0.0.1:{port}\"\n"
    );
    // A chip that is not a BME280 at 0x74; nothing at 0x75.
    install(&bus, 0x74, &register_map(0x99, 519_888, 415_148, 0));
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
    let config = common::write_config(dir.path(), &text);
    let mut ledge = Ledge::spawn(&config, &[]);
    ledge.wait_for_line("running as `i1`", WAIT);
    let client = TestClient::connect(port, "i2c-client", &["sensors/+/reading"]);

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
    install(&bus, 0x76, &register_map(0x60, 530_000, 415_148, 30_000));
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
    install(&bus, 0x76, &register_map(0x60, 519_888, 415_148, 30_000));
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

#[test]
fn bad_bme280_keys_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[[sensor]]\nname = \"a\"\nkind = \"bme280\"\naddress = 0x99\nmeasure = \"light\"\n\
                [[sensor]]\nname = \"b\"\nkind = \"bme280\"\nbus = 300\n";
    let config = common::write_config(dir.path(), text);
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = config.display().to_string();
    for expected in [
        format!("{path}:4:11: an I2C address is 0x03-0x77"),
        format!("{path}:5:11: unknown measure `light`"),
        format!("{path}:9:7: an I2C bus number is 0-255"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}
