//! A file-backed GPIO chip for tests and development, **not** for
//! production: `<dir>/<chip>/<line>` holds the line's physical level, `0` or
//! `1`.
//!
//! Inputs are polled every few milliseconds; a change of level goes through
//! the same [`Debouncer`] semantics as the kernel's debounce and becomes an
//! edge (in both directions: the sensor filters by its `edge`). Outputs write the file (atomically,
//! by rename), so a test reads exactly what a relay would see. `active_low`
//! inverts between the file (physical) and ledge (logical), as the kernel
//! does for a real line. As the kernel does, a line can be requested only
//! once at a time (within this process): a second request is refused until
//! the first is dropped, so code that forgets to release a line fails here
//! as it would on a gateway.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{
    Debouncer, Edge, GpioChip, GpioError, InputConfig, InputLine, OutputConfig, OutputLine,
};

/// How often a fake input's file is read.
const POLL: Duration = Duration::from_millis(5);

/// Lines requested and not yet released, by file.
static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// A hold on one fake line; dropping it releases the line.
struct Hold(PathBuf);

impl Hold {
    fn take(path: PathBuf) -> Result<Self, GpioError> {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(path.clone()) {
            return Err(GpioError::Unavailable(format!(
                "fake GPIO line {} is in use",
                path.display()
            )));
        }
        Ok(Self(path))
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&self.0);
    }
}

pub struct FakeChip {
    dir: PathBuf,
}

impl FakeChip {
    pub fn open(root: &Path, chip: &str) -> Result<Self, GpioError> {
        let name = chip.trim_start_matches("/dev/");
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(GpioError::Unavailable(format!(
                "fake GPIO chip name `{chip}` is not a plain name"
            )));
        }
        Ok(Self {
            dir: root.join(name),
        })
    }
}

impl GpioChip for FakeChip {
    fn request_input(
        &self,
        line: u32,
        _consumer: &str,
        config: &InputConfig,
    ) -> Result<Box<dyn InputLine>, GpioError> {
        let path = self.dir.join(line.to_string());
        let level = read_level(&path)?.unwrap_or(false);
        let initial = level != config.active_low;
        Ok(Box::new(FakeInput {
            _hold: Hold::take(path.clone())?,
            path,
            active_low: config.active_low,
            debouncer: Debouncer::new(initial, config.debounce),
        }))
    }

    fn request_output(
        &self,
        line: u32,
        _consumer: &str,
        config: OutputConfig,
    ) -> Result<Box<dyn OutputLine>, GpioError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            GpioError::Unavailable(format!("cannot create {}: {e}", self.dir.display()))
        })?;
        let path = self.dir.join(line.to_string());
        let mut output = FakeOutput {
            _hold: Hold::take(path.clone())?,
            path,
            active_low: config.active_low,
        };
        output.set(config.initial)?;
        Ok(Box::new(output))
    }
}

/// The physical level in `path`; `None` while the file is empty (a writer
/// between truncate and write).
fn read_level(path: &Path) -> Result<Option<bool>, GpioError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        GpioError::Unavailable(format!(
            "fake GPIO line {} not readable: {e}",
            path.display()
        ))
    })?;
    match text.trim() {
        "" => Ok(None),
        "0" => Ok(Some(false)),
        "1" => Ok(Some(true)),
        other => Err(GpioError::Io(format!(
            "fake GPIO line {} holds `{}`, not 0 or 1",
            path.display(),
            other.chars().take(20).collect::<String>()
        ))),
    }
}

struct FakeInput {
    _hold: Hold,
    path: PathBuf,
    active_low: bool,
    debouncer: Debouncer,
}

impl InputLine for FakeInput {
    fn value(&mut self) -> Result<bool, GpioError> {
        Ok(self.debouncer.stable())
    }

    fn next_edge(&mut self, timeout: Duration) -> Result<Option<Edge>, GpioError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if let Some(level) = read_level(&self.path)? {
                if let Some(value) = self.debouncer.observe(level != self.active_low, now) {
                    return Ok(Some(Edge { value }));
                }
            }
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }
}

struct FakeOutput {
    _hold: Hold,
    path: PathBuf,
    active_low: bool,
}

impl OutputLine for FakeOutput {
    fn set(&mut self, value: bool) -> Result<(), GpioError> {
        let level = if value != self.active_low {
            "1\n"
        } else {
            "0\n"
        };
        crate::fs::write_atomic(&self.path, level.as_bytes()).map_err(|e| {
            GpioError::Io(format!(
                "cannot write fake GPIO line {}: {e}",
                self.path.display()
            ))
        })
    }

    fn get(&mut self) -> Result<bool, GpioError> {
        let level = read_level(&self.path)?.unwrap_or(false);
        Ok(level != self.active_low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::gpio::EdgeKind;

    #[test]
    fn outputs_write_the_physical_level_and_read_back_the_logical_one() {
        let dir = tempfile::tempdir().unwrap();
        let chip = FakeChip::open(dir.path(), "gpiochip0").unwrap();
        let config = OutputConfig {
            initial: false,
            active_low: true,
        };
        let mut relay = chip.request_output(27, "t", config).unwrap();
        let file = dir.path().join("gpiochip0/27");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "1\n",
            "off is high when active-low"
        );
        relay.set(true).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n");
        assert!(relay.get().unwrap());
    }

    #[test]
    fn an_input_reports_every_debounced_change_in_both_directions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("c")).unwrap();
        let file = dir.path().join("c/4");
        std::fs::write(&file, "0").unwrap();
        let chip = FakeChip::open(dir.path(), "c").unwrap();
        let config = InputConfig {
            edge: EdgeKind::Falling,
            debounce: Duration::ZERO,
            bias: super::super::Bias::AsIs,
            active_low: false,
        };
        let mut input = chip.request_input(4, "t", &config).unwrap();
        std::fs::write(&file, "1").unwrap();
        assert_eq!(
            input.next_edge(Duration::from_millis(30)).unwrap(),
            Some(Edge { value: true }),
            "the sensor, not the line, filters by edge kind"
        );
        assert_eq!(input.next_edge(Duration::from_millis(30)).unwrap(), None);
        std::fs::write(&file, "0").unwrap();
        assert_eq!(
            input.next_edge(Duration::from_millis(30)).unwrap(),
            Some(Edge { value: false })
        );
    }

    #[test]
    fn a_line_is_requested_once_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let chip = FakeChip::open(dir.path(), "c").unwrap();
        let config = OutputConfig {
            initial: false,
            active_low: false,
        };
        let first = chip.request_output(3, "a", config).unwrap();
        let again = chip.request_output(3, "b", config);
        assert!(matches!(again, Err(GpioError::Unavailable(m)) if m.contains("in use")));
        drop(first);
        assert!(chip.request_output(3, "b", config).is_ok());
    }

    #[test]
    fn chip_names_cannot_leave_the_fake_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FakeChip::open(dir.path(), "../etc").is_err());
        assert!(FakeChip::open(dir.path(), "/dev/gpiochip0").is_ok());
    }
}
