//! The per-sensor windows: plain values with no host calls, so the handler
//! decides when to commit them and tests can drive them directly.

use core::fmt;
use std::collections::BTreeMap;

/// How many sensors one instance tracks at most. Sensor names come from
/// payloads, so without a cap a stream of made-up names would grow the map
/// until the instance hits its memory limit; a gateway has far fewer sensors.
pub(crate) const MAX_SENSORS: usize = 1024;

/// One sensor's readings since its last completed window.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    sum: f64,
    count: u32,
}

/// What adding one reading did to its window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Step {
    /// The average of the readings in the window, this one included.
    pub(crate) average: f64,
    /// How many readings that is.
    pub(crate) count: u32,
    /// Whether the window is now full: publish it; the next reading starts anew.
    pub(crate) complete: bool,
}

impl Window {
    /// The window after adding `value` (empty again if this completed it),
    /// and what happened, for windows of `size` readings.
    pub(crate) fn add(self, value: f64, size: u32) -> (Window, Step) {
        let sum = self.sum + value;
        let count = self.count.saturating_add(1);
        let step = Step {
            average: sum / f64::from(count),
            count,
            complete: count >= size,
        };
        let next = if step.complete {
            Window::default()
        } else {
            Window { sum, count }
        };
        (next, step)
    }
}

/// Every sensor's window.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    by_sensor: BTreeMap<String, Window>,
}

/// A reading from one sensor more than [`MAX_SENSORS`].
#[derive(Debug, PartialEq)]
pub(crate) struct TooManySensors;

impl fmt::Display for TooManySensors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "already averaging {MAX_SENSORS} sensors; refusing a new one"
        )
    }
}

impl Windows {
    /// `sensor`'s window (empty for a new sensor, if there is room for one).
    pub(crate) fn get(&self, sensor: &str) -> Result<Window, TooManySensors> {
        match self.by_sensor.get(sensor) {
            Some(window) => Ok(*window),
            None if self.by_sensor.len() < MAX_SENSORS => Ok(Window::default()),
            None => Err(TooManySensors),
        }
    }

    /// Stores `sensor`'s window.
    pub(crate) fn set(&mut self, sensor: String, window: Window) {
        self.by_sensor.insert(sensor, window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_averages_until_it_is_full_then_starts_over() {
        let mut window = Window::default();
        let mut steps = Vec::new();
        for value in [1.0, 2.0, 6.0, 10.0] {
            let (next, step) = window.add(value, 3);
            window = next;
            steps.push((step.average, step.count, step.complete));
        }
        assert_eq!(
            steps,
            [
                (1.0, 1, false),
                (1.5, 2, false),
                (3.0, 3, true),
                (10.0, 1, false)
            ]
        );
    }

    #[test]
    fn a_window_of_one_completes_every_reading() {
        let (next, step) = Window::default().add(4.0, 1);
        assert_eq!(next, Window::default());
        assert_eq!(
            step,
            Step {
                average: 4.0,
                count: 1,
                complete: true
            }
        );
    }

    #[test]
    fn new_sensors_are_refused_once_the_map_is_full() {
        let mut windows = Windows::default();
        for n in 0..MAX_SENSORS {
            windows.set(format!("s{n}"), Window::default());
        }
        assert_eq!(windows.get("s0"), Ok(Window::default()));
        assert_eq!(windows.get("new"), Err(TooManySensors));
    }
}
