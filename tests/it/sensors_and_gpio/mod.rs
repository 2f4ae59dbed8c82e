//! Sensors report readings, changes and errors, none blocking another;
//! GPIO inputs are debounced edges, outputs are driven only by functions
//! allowed to, and actuators are in their safe state at start, at stop and
//! after their writer crashes; the shipped thermostat keeps the heater
//! right while its upstream is unreachable. On fake hardware behind the
//! real drivers' interfaces (`common::fake_hw`).

mod gpio;
mod readings;
mod thermostat;
