//! Offline-first: what ledge accepts reaches upstream, in order, at least
//! once, whatever happens to the uplink (down, flapping, refusing TLS), the
//! local broker or ledge itself (kill -9 at any moment); what cannot go yet
//! waits in the spool.

mod mutual_tls;
mod upstream_sync;
