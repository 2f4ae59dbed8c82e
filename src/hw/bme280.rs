//! The Bosch BME280 / BMP280 chip's arithmetic, without I/O: decoding its
//! factory calibration registers and raw ADC words, and the datasheet's
//! integer compensation formulas that turn them into °C, hPa and %RH.
//!
//! The driver that talks to the chip over I2C is `sources::sensor::bme280`;
//! the config names a sensor's [`Quantity`] (`measure`). Kept apart from the
//! driver so both can use it without the config reaching into the pipeline.

/// What one sensor reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// °C.
    Temperature,
    /// hPa.
    Pressure,
    /// % relative humidity (BME280 only).
    Humidity,
}

impl Quantity {
    pub fn unit(self) -> &'static str {
        match self {
            Self::Temperature => "C",
            Self::Pressure => "hPa",
            Self::Humidity => "%",
        }
    }
}

/// The factory trimming parameters (datasheet table 16).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calibration {
    pub t1: u16,
    pub t2: i16,
    pub t3: i16,
    pub p1: u16,
    pub p2: i16,
    pub p3: i16,
    pub p4: i16,
    pub p5: i16,
    pub p6: i16,
    pub p7: i16,
    pub p8: i16,
    pub p9: i16,
    pub h1: u8,
    pub h2: i16,
    pub h3: u8,
    pub h4: i16,
    pub h5: i16,
    pub h6: i8,
    /// A BME280 (false: a BMP280, no humidity).
    pub has_humidity: bool,
}

impl Calibration {
    /// From the bytes at 0x88..=0xA1 and 0xE1..=0xE7 (little-endian words;
    /// H4 and H5 are 12-bit values sharing 0xE5).
    pub fn from_registers(tp: &[u8; 26], h: &[u8; 7], has_humidity: bool) -> Self {
        let u = |i: usize| u16::from_le_bytes([tp[i], tp[i + 1]]);
        let s = |i: usize| i16::from_le_bytes([tp[i], tp[i + 1]]);
        Self {
            t1: u(0),
            t2: s(2),
            t3: s(4),
            p1: u(6),
            p2: s(8),
            p3: s(10),
            p4: s(12),
            p5: s(14),
            p6: s(16),
            p7: s(18),
            p8: s(20),
            p9: s(22),
            // 0xA0 (index 24) is unused; H1 is at 0xA1.
            h1: tp[25],
            h2: i16::from_le_bytes([h[0], h[1]]),
            h3: h[2],
            h4: ((h[3] as i8 as i16) << 4) | (h[4] & 0x0f) as i16,
            h5: ((h[5] as i8 as i16) << 4) | (h[4] >> 4) as i16,
            h6: h[6] as i8,
            has_humidity,
        }
    }
}

/// Raw ADC values: 20-bit temperature and pressure, 16-bit humidity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw {
    pub temperature: i32,
    pub pressure: i32,
    pub humidity: i32,
}

impl Raw {
    /// From the burst read at 0xF7..=0xFE.
    pub fn from_data(d: &[u8; 8]) -> Self {
        let twenty = |a: u8, b: u8, c: u8| ((a as i32) << 12) | ((b as i32) << 4) | (c as i32 >> 4);
        Self {
            pressure: twenty(d[0], d[1], d[2]),
            temperature: twenty(d[3], d[4], d[5]),
            humidity: ((d[6] as i32) << 8) | d[7] as i32,
        }
    }
}

/// The value of `quantity` (°C, hPa or %RH), or `None` if the chip skipped
/// the measurement (raw 0x80000, or 0x8000 for humidity).
pub fn compensate(c: &Calibration, raw: Raw, quantity: Quantity) -> Option<f64> {
    if raw.temperature == 0x80000 {
        return None;
    }
    let t_fine = t_fine(c, raw.temperature);
    match quantity {
        Quantity::Temperature => Some(((t_fine * 5 + 128) >> 8) as f64 / 100.0),
        Quantity::Pressure if raw.pressure == 0x80000 => None,
        Quantity::Pressure => Some(pressure_q24_8(c, t_fine, raw.pressure) as f64 / 256.0 / 100.0),
        Quantity::Humidity if raw.humidity == 0x8000 => None,
        Quantity::Humidity => Some(humidity_q22_10(c, t_fine, raw.humidity) as f64 / 1024.0),
    }
}

/// Datasheet 4.2.3: the fine temperature shared by all three formulas.
/// (Computed in 64 bits: equal to the datasheet's 32-bit arithmetic for
/// every real chip, and no overflow panic on garbage calibration.)
pub fn t_fine(c: &Calibration, adc_t: i32) -> i32 {
    let (adc_t, t1, t2, t3) = (adc_t as i64, c.t1 as i64, c.t2 as i64, c.t3 as i64);
    let var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11;
    let var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14;
    (var1 + var2) as i32
}

/// Datasheet 4.2.3, 64-bit: pressure in Pa as Q24.8.
/// (In 128 bits: the 64-bit results for real chips, no overflow on garbage.)
fn pressure_q24_8(c: &Calibration, t_fine: i32, adc_p: i32) -> u32 {
    let mut var1 = t_fine as i128 - 128_000;
    let mut var2 = var1 * var1 * c.p6 as i128;
    var2 += (var1 * c.p5 as i128) << 17;
    var2 += (c.p4 as i128) << 35;
    var1 = ((var1 * var1 * c.p3 as i128) >> 8) + ((var1 * c.p2 as i128) << 12);
    var1 = (((1i128 << 47) + var1) * c.p1 as i128) >> 33;
    if var1 == 0 {
        return 0; // avoid a division by zero (an unprogrammed chip)
    }
    let mut p: i128 = 1_048_576 - adc_p as i128;
    p = (((p << 31) - var2) * 3125) / var1;
    let var1 = (c.p9 as i128 * (p >> 13) * (p >> 13)) >> 25;
    let var2 = (c.p8 as i128 * p) >> 19;
    (((p + var1 + var2) >> 8) + ((c.p7 as i128) << 4)) as u32
}

/// Datasheet 4.2.3: relative humidity in % as Q22.10.
/// (In 64 bits, like `t_fine`.)
fn humidity_q22_10(c: &Calibration, t_fine: i32, adc_h: i32) -> u32 {
    let (h1, h2, h3, h4, h5, h6) = (
        c.h1 as i64,
        c.h2 as i64,
        c.h3 as i64,
        c.h4 as i64,
        c.h5 as i64,
        c.h6 as i64,
    );
    let (t_fine, adc_h) = (t_fine as i64, adc_h as i64);
    let mut v = t_fine - 76_800;
    v = (((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16_384) >> 15;
    let a = v_mul(t_fine, h6) >> 10;
    let b = (v_mul(t_fine, h3) >> 11) + 32_768;
    v *= ((((a * b) >> 10) + 2_097_152) * h2 + 8192) >> 14;
    v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4;
    (v.clamp(0, 419_430_400) >> 12) as u32
}

/// `(t_fine - 76800) * h`: the datasheet's `v_x1_u32r * dig_Hn`.
fn v_mul(t_fine: i64, h: i64) -> i64 {
    (t_fine - 76_800) * h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BMP280 datasheet's worked example (section 3.12).
    fn datasheet() -> Calibration {
        Calibration {
            t1: 27504,
            t2: 26435,
            t3: -1000,
            p1: 36477,
            p2: -10685,
            p3: 3024,
            p4: 2855,
            p5: 140,
            p6: -7,
            p7: 15500,
            p8: -14600,
            p9: 6000,
            // Typical humidity trimming of a BME280.
            h1: 75,
            h2: 362,
            h3: 0,
            h4: 313,
            h5: 50,
            h6: 30,
            has_humidity: true,
        }
    }

    const RAW: Raw = Raw {
        temperature: 519_888,
        pressure: 415_148,
        humidity: 30_000,
    };

    #[test]
    fn the_datasheet_example_gives_25_08_degrees_and_1006_53_hpa() {
        let c = datasheet();
        assert_eq!(t_fine(&c, RAW.temperature), 128_422);
        assert_eq!(compensate(&c, RAW, Quantity::Temperature), Some(25.08));
        let hpa = compensate(&c, RAW, Quantity::Pressure).unwrap();
        assert!((hpa - 1006.5327).abs() < 0.001, "{hpa}");
    }

    /// The datasheet's floating-point humidity formula (section 8.1).
    fn humidity_double(c: &Calibration, t_fine: i32, adc_h: i32) -> f64 {
        let mut h = t_fine as f64 - 76_800.0;
        h = (adc_h as f64 - (c.h4 as f64 * 64.0 + c.h5 as f64 / 16_384.0 * h))
            * (c.h2 as f64 / 65_536.0
                * (1.0 + c.h6 as f64 / 67_108_864.0 * h * (1.0 + c.h3 as f64 / 67_108_864.0 * h)));
        h *= 1.0 - c.h1 as f64 * h / 524_288.0;
        h.clamp(0.0, 100.0)
    }

    #[test]
    fn integer_humidity_agrees_with_the_datasheet_floating_point_formula() {
        let c = datasheet();
        for adc_t in [400_000, 519_888, 600_000] {
            for adc_h in [20_000, 25_000, 30_000, 35_000, 40_000] {
                let raw = Raw {
                    temperature: adc_t,
                    pressure: RAW.pressure,
                    humidity: adc_h,
                };
                let int = compensate(&c, raw, Quantity::Humidity).unwrap();
                let float = humidity_double(&c, t_fine(&c, adc_t), adc_h);
                assert!(
                    (int - float).abs() < 0.05,
                    "{adc_t} {adc_h}: {int} vs {float}"
                );
            }
        }
        // Pinned (the loop above is the independent check): 54.997 %RH.
        let rh = compensate(&c, RAW, Quantity::Humidity).unwrap();
        assert_eq!(rh, 56_317.0 / 1024.0);
    }

    #[test]
    fn calibration_registers_are_decoded_with_the_split_h4_and_h5() {
        let mut tp = [0u8; 26];
        tp[0..2].copy_from_slice(&27504u16.to_le_bytes());
        tp[4..6].copy_from_slice(&(-1000i16).to_le_bytes());
        tp[25] = 75;
        // H2 = 362, H3 = 0, H4 = 313 (0x139), H5 = 50 (0x032), H6 = 30.
        let h = [0x6a, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1e];
        let c = Calibration::from_registers(&tp, &h, true);
        assert_eq!((c.t1, c.t3, c.h1), (27504, -1000, 75));
        assert_eq!((c.h2, c.h3, c.h4, c.h5, c.h6), (362, 0, 313, 50, 30));
        // Negative H4/H5 keep their sign.
        let c = Calibration::from_registers(&tp, &[0, 0, 0, 0xff, 0xff, 0xff, 0xe2], true);
        assert_eq!((c.h4, c.h5, c.h6), (-1, -1, -30));
    }

    #[test]
    fn raw_values_are_assembled_from_20_bit_registers() {
        // 519888 = 0x7EED0, 415148 = 0x655AC.
        let data = [0x65, 0x5a, 0xc0, 0x7e, 0xed, 0x00, 0x75, 0x30];
        assert_eq!(Raw::from_data(&data), RAW);
        let skipped = Raw::from_data(&[0x80, 0, 0, 0x80, 0, 0, 0x80, 0]);
        assert_eq!(
            compensate(&datasheet(), skipped, Quantity::Temperature),
            None
        );
    }
}
