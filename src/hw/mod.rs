//! Hardware ledge drives directly, beside the pipeline: GPIO lines through
//! the Linux GPIO character device. Inputs become sensor events
//! (`sources::sensor::gpio`); outputs are actuators functions switch with
//! the `gpio_write` host call (`runtime::abi`). [`bme280`] is a chip's
//! arithmetic (calibration and compensation), without I/O.

pub mod bme280;
pub mod gpio;
