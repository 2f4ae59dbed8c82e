//! {{name}}: a ledge function.
//!
//! Publishes each event's payload on `OUT_TOPIC` (default `{{name}}/out`),
//! logs where it came from, and responds with it. An empty payload is a
//! permanent failure: retrying the same event cannot fix it.

use ledge_sdk::{Context, Event, Failure, Qos, info, publish};

fn handle(event: &Event, ctx: &Context) -> Result<Vec<u8>, Failure> {
    if event.payload().is_empty() {
        return Err(Failure::permanent("empty payload"));
    }
    let topic = ctx.env("OUT_TOPIC").unwrap_or_else(|| "{{name}}/out".into());
    // A refused publish is retryable (`?` turns any error into a retry).
    publish(&topic, event.payload(), Qos::AtLeastOnce)?;
    info!(
        "{} bytes from {} `{}` on {}",
        event.payload().len(),
        event.source(),
        event.subject(),
        ctx.device_id()
    );
    Ok(event.payload().to_vec())
}

ledge_sdk::handler!(handle);

#[cfg(test)]
mod tests {
    use super::*;
    use ledge_sdk::mock;

    #[test]
    fn responds_with_the_payload_and_publishes_it() {
        assert_eq!(mock::invoke(handle, b"hello"), Ok(b"hello".to_vec()));
        assert_eq!(mock::published()[0].topic, "{{name}}/out");
    }

    #[test]
    fn an_empty_payload_fails_for_good() {
        assert_eq!(mock::invoke(handle, b""), Err("empty payload".into()));
        assert_eq!(mock::last_status(), 2);
    }
}
