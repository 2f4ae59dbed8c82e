//! echo: responds with its payload unchanged, and republishes it at QoS 0 to
//! the topic in env `ECHO_TOPIC` when that is set. The smallest useful
//! function, and a template for new ones.

use ledge_sdk::{Context, Event, Qos, publish};

fn handle(event: &Event, ctx: &Context) -> Result<Vec<u8>, String> {
    if let Some(topic) = ctx.env("ECHO_TOPIC") {
        publish(&topic, event.payload(), Qos::AtMostOnce)
            .map_err(|err| format!("echo to {topic:?} failed: {err}"))?;
    }
    Ok(event.payload().to_vec())
}

ledge_sdk::handler!(handle);

#[cfg(test)]
mod tests {
    use ledge_sdk::mock;

    use super::handle;

    #[test]
    fn the_response_is_the_payload() {
        assert_eq!(
            mock::invoke(handle, b"\x00bytes\xff"),
            Ok(b"\x00bytes\xff".to_vec())
        );
        assert_eq!(mock::invoke(handle, b""), Ok(Vec::new()));
        assert!(mock::published().is_empty());
    }

    #[test]
    fn with_echo_topic_the_payload_is_also_published() {
        mock::set_env("ECHO_TOPIC", "echoes/out");
        assert_eq!(mock::invoke(handle, b"hello"), Ok(b"hello".to_vec()));
        let sent = mock::published();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].topic.as_str(), &sent[0].payload[..], sent[0].qos),
            ("echoes/out", &b"hello"[..], 0)
        );
    }

    #[test]
    fn a_failed_publish_is_the_error() {
        mock::set_env("ECHO_TOPIC", "echoes/out");
        mock::set_publish_result(-4);
        assert_eq!(
            mock::invoke(handle, b"hello"),
            Err("echo to \"echoes/out\" failed: publish unavailable: local broker disconnected or its queue is full".into())
        );
    }
}
