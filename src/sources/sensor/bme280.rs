//! Bosch BME280 (temperature, pressure, humidity) and BMP280 (no humidity)
//! on I2C, driven directly from the datasheet.
//!
//! Each sample is one **forced-mode** measurement: write the oversampling
//! (×1 for every quantity) and forced mode, wait while the status register
//! says "measuring" (about 10 ms), read the raw values at 0xF7..0xFE, and
//! compensate them with the chip's factory calibration (read once, from
//! 0x88..0xA1 and 0xE1..0xE7) using the datasheet's integer formulas
//! ([`crate::hw::bme280`]). The chip sleeps between samples, drawing
//! ~0.1 µA.
//!
//! One `[[sensor]]` reports one quantity (`measure`); a chip measured for
//! several quantities is simply several sensors at the same address. The
//! chip id is checked on first use and after every failure, so a chip
//! swapped or re-plugged is found again and its calibration re-read.

use std::time::Duration;

use super::i2c::{I2cBus, I2cError};
use super::{Sample, Sensor, SensorError};
use crate::hw::bme280::{compensate, Calibration, Quantity, Raw};

const REG_CHIP_ID: u8 = 0xd0;
const REG_CALIB_TP: u8 = 0x88;
const REG_CALIB_H: u8 = 0xe1;
const REG_CTRL_HUM: u8 = 0xf2;
const REG_STATUS: u8 = 0xf3;
const REG_CTRL_MEAS: u8 = 0xf4;
const REG_DATA: u8 = 0xf7;
const CHIP_BME280: u8 = 0x60;
/// BMP280 production parts; 0x56 and 0x57 are its engineering samples.
const CHIP_BMP280: [u8; 3] = [0x58, 0x56, 0x57];
/// osrs_t = ×1, osrs_p = ×1, mode = forced.
const CTRL_MEAS_FORCED: u8 = (0b001 << 5) | (0b001 << 2) | 0b01;
/// osrs_h = ×1.
const CTRL_HUM_X1: u8 = 0b001;
/// Status bit 3: a conversion is running.
const STATUS_MEASURING: u8 = 0b1000;

pub struct Bme280Sensor {
    bus: Box<dyn I2cBus>,
    address: u8,
    quantity: Quantity,
    /// Read on first use; dropped after any failure.
    calibration: Option<Calibration>,
}

impl Bme280Sensor {
    pub fn new(bus: Box<dyn I2cBus>, address: u8, quantity: Quantity) -> Self {
        Self {
            bus,
            address,
            quantity,
            calibration: None,
        }
    }

    fn read(&mut self, register: u8, buf: &mut [u8]) -> Result<(), SensorError> {
        self.bus
            .write_read(self.address, &[register], buf)
            .map_err(unavailable)
    }

    fn calibrate(&mut self) -> Result<Calibration, SensorError> {
        let mut id = [0u8];
        self.read(REG_CHIP_ID, &mut id)?;
        let has_humidity = match id[0] {
            CHIP_BME280 => true,
            id if CHIP_BMP280.contains(&id) => false,
            other => {
                return Err(SensorError::Garbage(format!(
                    "chip id 0x{other:02x} at 0x{:02x} is not a BME280 (0x60) or BMP280 (0x58)",
                    self.address
                )))
            }
        };
        if self.quantity == Quantity::Humidity && !has_humidity {
            return Err(SensorError::Garbage(format!(
                "the chip at 0x{:02x} is a BMP280, which has no humidity sensor",
                self.address
            )));
        }
        let mut tp = [0u8; 26];
        self.read(REG_CALIB_TP, &mut tp)?;
        let mut h = [0u8; 7];
        if has_humidity {
            self.read(REG_CALIB_H, &mut h)?;
        }
        Ok(Calibration::from_registers(&tp, &h, has_humidity))
    }

    fn measure(&mut self, calibration: &Calibration) -> Result<[u8; 8], SensorError> {
        // ctrl_hum takes effect only after a write to ctrl_meas.
        if calibration.has_humidity {
            self.bus
                .write(self.address, &[REG_CTRL_HUM, CTRL_HUM_X1])
                .map_err(unavailable)?;
        }
        self.bus
            .write(self.address, &[REG_CTRL_MEAS, CTRL_MEAS_FORCED])
            .map_err(unavailable)?;
        // ×1 oversampling of all three takes at most 9.3 ms (datasheet 9.1).
        std::thread::sleep(Duration::from_millis(10));
        let mut status = [0u8];
        for _ in 0..10 {
            self.read(REG_STATUS, &mut status)?;
            if status[0] & STATUS_MEASURING == 0 {
                let mut data = [0u8; 8];
                self.read(REG_DATA, &mut data)?;
                return Ok(data);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err(SensorError::Garbage(format!(
            "the chip at 0x{:02x} is still measuring after 60 ms",
            self.address
        )))
    }

    fn try_sample(&mut self) -> Result<Sample, SensorError> {
        let calibration = match self.calibration {
            Some(c) => c,
            None => self.calibrate()?,
        };
        self.calibration = Some(calibration);
        let data = self.measure(&calibration)?;
        let raw = Raw::from_data(&data);
        let value = compensate(&calibration, raw, self.quantity).ok_or_else(|| {
            SensorError::Garbage(format!(
                "the chip at 0x{:02x} returned no measurement (raw 0x80000: skipped)",
                self.address
            ))
        })?;
        Ok(Sample { value })
    }
}

impl Sensor for Bme280Sensor {
    fn sample(&mut self) -> Result<Sample, SensorError> {
        let result = self.try_sample();
        if result.is_err() {
            self.calibration = None;
        }
        result
    }
}

fn unavailable(e: I2cError) -> SensorError {
    SensorError::Unavailable(e.to_string())
}
