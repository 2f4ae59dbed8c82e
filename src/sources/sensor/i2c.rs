//! I2C buses: the [`I2cBus`] trait, the Linux driver over `/dev/i2c-N`, and
//! a file-backed fake for tests and development.
//!
//! Device drivers (the BME280) talk to registers through two operations: a
//! write, and a write followed by a read in one transaction (a repeated
//! start, which register reads on most sensors need). That is all the trait
//! offers, so a driver never touches a file descriptor and tests can run it
//! against a register map.
//!
//! The fake is selected by pointing `bus` at a **directory**: each device is
//! a file named after its address (`0x76`) holding its 256 registers,
//! register n at byte n. Reads come from the file as it is at that moment
//! (tests rewrite it to change readings); writes are accepted and kept in
//! memory only, so a test's file always says what the chip would report. A
//! missing file is a device that does not answer (a NACK).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Why a bus transaction failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum I2cError {
    /// The bus itself is not there (I2C disabled, wrong number).
    #[error("I2C bus {0} not present (is I2C enabled? on a Raspberry Pi: dtparam=i2c_arm=on)")]
    NoBus(String),
    /// Nothing acknowledged the address: not connected, or another address.
    #[error(
        "no answer from address 0x{address:02x} on {bus} (not connected, or at another address)"
    )]
    Nack { bus: String, address: u8 },
    /// Any other failure of the transfer.
    #[error("I2C transfer on {bus} failed: {reason}")]
    Io { bus: String, reason: String },
}

/// Register access to devices on one bus.
pub trait I2cBus: Send {
    /// Writes `bytes` to the device at `address`.
    fn write(&mut self, address: u8, bytes: &[u8]) -> Result<(), I2cError>;
    /// Writes `write`, then reads `read.len()` bytes, in one transaction.
    fn write_read(&mut self, address: u8, write: &[u8], read: &mut [u8]) -> Result<(), I2cError>;
}

/// Opens the bus at `path`: a directory is the register-map fake, anything
/// else a Linux i2c-dev device.
pub fn open(path: &Path) -> Box<dyn I2cBus> {
    if path.is_dir() {
        Box::new(FakeBus::new(path.to_path_buf()))
    } else {
        Box::new(LinuxBus::new(path.to_path_buf()))
    }
}

/// `/dev/i2c-N` through the kernel's i2c-dev interface (`I2C_RDWR`).
pub struct LinuxBus {
    path: PathBuf,
    /// Opened on first use and dropped after a failure, so an adapter that
    /// comes back (a USB bridge replugged) is found again.
    file: Option<File>,
}

/// ioctl numbers and flags from `<linux/i2c-dev.h>` and `<linux/i2c.h>`
/// (libc does not carry them).
const I2C_RDWR: u64 = 0x0707;
const I2C_M_RD: u16 = 0x0001;

/// `struct i2c_msg`.
#[repr(C)]
struct I2cMsg {
    addr: u16,
    flags: u16,
    len: u16,
    buf: *mut u8,
}

/// `struct i2c_rdwr_ioctl_data`.
#[repr(C)]
struct I2cRdwrData {
    msgs: *mut I2cMsg,
    nmsgs: u32,
}

impl LinuxBus {
    pub fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn transfer(&mut self, msgs: &mut [I2cMsg]) -> Result<(), I2cError> {
        use std::os::fd::AsRawFd;
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => I2cError::NoBus(self.name()),
                    _ => I2cError::Io {
                        bus: self.name(),
                        reason: e.to_string(),
                    },
                })?;
            self.file = Some(file);
        }
        let fd = self.file.as_ref().map_or(-1, |f| f.as_raw_fd());
        let mut data = I2cRdwrData {
            msgs: msgs.as_mut_ptr(),
            nmsgs: msgs.len() as u32,
        };
        // SAFETY: `data` points at `msgs`, whose buffers are live slices of
        // the lengths given; the kernel reads/writes only within them for
        // the duration of the call.
        let result = unsafe { libc::ioctl(fd, I2C_RDWR as _, &mut data as *mut I2cRdwrData) };
        if result >= 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        self.file = None;
        Err(match error.raw_os_error() {
            // The adapter reports a missing ACK as ENXIO or EREMOTEIO.
            Some(libc::ENXIO) | Some(libc::EREMOTEIO) => I2cError::Nack {
                bus: self.name(),
                address: msgs[0].addr as u8,
            },
            Some(libc::ENODEV) | Some(libc::ENOENT) => I2cError::NoBus(self.name()),
            _ => I2cError::Io {
                bus: self.name(),
                reason: error.to_string(),
            },
        })
    }
}

impl I2cBus for LinuxBus {
    fn write(&mut self, address: u8, bytes: &[u8]) -> Result<(), I2cError> {
        let mut buf = bytes.to_vec();
        let mut msgs = [I2cMsg {
            addr: address as u16,
            flags: 0,
            len: buf.len() as u16,
            buf: buf.as_mut_ptr(),
        }];
        self.transfer(&mut msgs)
    }

    fn write_read(&mut self, address: u8, write: &[u8], read: &mut [u8]) -> Result<(), I2cError> {
        let mut out = write.to_vec();
        let mut msgs = [
            I2cMsg {
                addr: address as u16,
                flags: 0,
                len: out.len() as u16,
                buf: out.as_mut_ptr(),
            },
            I2cMsg {
                addr: address as u16,
                flags: I2C_M_RD,
                len: read.len() as u16,
                buf: read.as_mut_ptr(),
            },
        ];
        self.transfer(&mut msgs)
    }
}

/// A bus whose devices are register-map files in a directory.
pub struct FakeBus {
    dir: PathBuf,
    /// Registers written, per address (kept in memory, not in the files).
    written: HashMap<u8, HashMap<u8, u8>>,
}

impl FakeBus {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            written: HashMap::new(),
        }
    }

    fn registers(&self, address: u8) -> Result<Vec<u8>, I2cError> {
        if !self.dir.is_dir() {
            return Err(I2cError::NoBus(self.dir.display().to_string()));
        }
        std::fs::read(self.dir.join(format!("0x{address:02x}"))).map_err(|_| I2cError::Nack {
            bus: self.dir.display().to_string(),
            address,
        })
    }

    /// The last value written to a register, for tests of drivers.
    pub fn written(&self, address: u8, register: u8) -> Option<u8> {
        self.written.get(&address)?.get(&register).copied()
    }
}

impl I2cBus for FakeBus {
    fn write(&mut self, address: u8, bytes: &[u8]) -> Result<(), I2cError> {
        self.registers(address)?;
        // Register-addressed writes: [register, value, register, value...]
        // (the BME280's auto-increment-free write protocol).
        let written = self.written.entry(address).or_default();
        for pair in bytes.chunks_exact(2) {
            written.insert(pair[0], pair[1]);
        }
        Ok(())
    }

    fn write_read(&mut self, address: u8, write: &[u8], read: &mut [u8]) -> Result<(), I2cError> {
        let registers = self.registers(address)?;
        let start = *write.first().unwrap_or(&0) as usize;
        for (i, byte) in read.iter_mut().enumerate() {
            *byte = registers.get(start + i).copied().unwrap_or(0xff);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fake_reads_registers_from_its_file_and_nacks_a_missing_device() {
        let dir = tempfile::tempdir().unwrap();
        let mut map = vec![0u8; 256];
        map[0xd0] = 0x60;
        map[0xd1] = 0x61;
        std::fs::write(dir.path().join("0x76"), &map).unwrap();
        let mut bus = open(dir.path());
        let mut id = [0u8; 2];
        bus.write_read(0x76, &[0xd0], &mut id).unwrap();
        assert_eq!(id, [0x60, 0x61]);
        assert!(matches!(
            bus.write_read(0x77, &[0xd0], &mut id),
            Err(I2cError::Nack { address: 0x77, .. })
        ));
        let mut fake = FakeBus::new(dir.path().to_path_buf());
        fake.write(0x76, &[0xf4, 0x25]).unwrap();
        assert_eq!(fake.written(0x76, 0xf4), Some(0x25));
    }

    #[test]
    fn a_missing_linux_bus_says_so() {
        let mut bus = open(Path::new("/dev/i2c-does-not-exist"));
        let err = bus.write(0x76, &[0xf4, 0x25]).unwrap_err();
        assert!(matches!(err, I2cError::NoBus(_)), "{err}");
        assert!(err.to_string().contains("not present"));
    }
}
