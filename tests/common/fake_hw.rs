//! Hardware this machine lacks, faked in the form ledge's real drivers read
//! it: the file-backed GPIO chip (`[device] gpio_fake`), a sysfs tree
//! (`sysfs_root`) with a 1-wire DS18B20, an IIO channel and a thermal zone,
//! and the register-map I2C bus (`bus` pointing at a folder). Every write
//! is whole (write, then rename), as the kernel presents a file.

use std::path::Path;

/// The chip folder of board rpi4's header in the fake GPIO: its label.
pub const RPI4_CHIP: &str = "pinctrl-bcm2711";

/// The DS18B20 every 1-wire test uses.
pub const W1_DEVICE: &str = "28-00000a1b2c3d";

/// A DS18B20's `w1_slave` before the temperature.
const W1_GOOD: &str = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=";

/// Writes `text` to `path` whole: a reader sees the old file or the new.
fn replace(path: &Path, text: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Sets a fake input's physical level.
pub fn set_level(chip: &Path, line: u32, level: u8) {
    std::fs::create_dir_all(chip).unwrap();
    replace(&chip.join(line.to_string()), format!("{level}\n"));
}

/// A fake line's physical level, as ledge left it.
pub fn level(chip: &Path, line: u32) -> String {
    std::fs::read_to_string(chip.join(line.to_string()))
        .unwrap_or_else(|e| panic!("{}/{line}: {e}", chip.display()))
        .trim()
        .to_owned()
}

/// The DS18B20 under sysfs `root` reads `millidegrees`, with a good or a
/// failed CRC.
pub fn w1(root: &Path, millidegrees: i64, crc_ok: bool) {
    let dir = root.join("bus/w1/devices").join(W1_DEVICE);
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!("{W1_GOOD}{millidegrees}\n");
    let text = if crc_ok {
        text
    } else {
        text.replace("YES", "NO")
    };
    replace(&dir.join("w1_slave"), text);
}

/// IIO `device` under sysfs `root` with `channel`'s raw value and scale.
pub fn iio_channel(root: &Path, device: &str, channel: &str, raw: &str, scale: &str) {
    let dir = root.join("bus/iio/devices").join(device);
    std::fs::create_dir_all(&dir).unwrap();
    replace(&dir.join(format!("{channel}_raw")), format!("{raw}\n"));
    replace(&dir.join(format!("{channel}_scale")), format!("{scale}\n"));
}

/// Thermal zone `zone` under sysfs `root` reads `millidegrees`.
pub fn thermal_zone(root: &Path, zone: u32, millidegrees: i64) {
    let dir = root.join(format!("class/thermal/thermal_zone{zone}"));
    std::fs::create_dir_all(&dir).unwrap();
    replace(&dir.join("temp"), format!("{millidegrees}\n"));
}

/// A BME280's (or, by `chip_id`, another chip's) registers: the BMP280
/// datasheet's example calibration (section 3.12) plus typical BME280
/// humidity trimming, and the given raw readings.
pub fn bme280_registers(chip_id: u8, raw_t: u32, raw_p: u32, raw_h: u16) -> Vec<u8> {
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

/// Puts a chip answering at `address` on the fake I2C `bus`.
pub fn install_i2c_chip(bus: &Path, address: u8, registers: &[u8]) {
    std::fs::create_dir_all(bus).unwrap();
    replace(&bus.join(format!("0x{address:02x}")), registers);
}
