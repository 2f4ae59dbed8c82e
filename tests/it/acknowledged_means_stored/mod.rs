//! An acknowledgement means stored: a QoS 1 message ledge acknowledged, an
//! event a durable trigger accepted, a record the spool reported durable
//! are on flash, and stay there through kill -9, a full disk, a log flood,
//! torn tails and damaged segments, until they are delivered.

mod atomic_replace;
mod bursts;
mod durable_triggers;
mod full_disk;
mod log_flood;
mod spool;
mod spool_damage;
