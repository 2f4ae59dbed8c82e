//! Sources: where events come from.
//!
//! - `mqtt`: messages from the local broker whose topic matches a trigger.
//! - `sensor`: readings sampled from devices (replay files, sysfs, 1-wire,
//!   IIO, I2C through the `I2cBus` trait, simulations), each behind the same
//!   `Sensor` trait.
//! - `schedule`: periodic (`every`) and wall-clock (`cron`) events.
//! - `invoke`: synchronous requests over MQTT 5 (external brokers).
//!
//! Every source turns what happened into an [`Event`](crate::event::Event)
//! and hands it to the dispatcher; none of them runs function code.

pub mod invoke;
pub mod mqtt;
pub mod schedule;
pub mod sensor;
