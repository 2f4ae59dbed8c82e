//! Host-side tests of the SDK against the mock host.

use crate::log::Level;
use crate::{Context, Event, PublishError, Qos, Source, mock, publish};

fn echo(event: &Event, _ctx: &Context) -> Result<Vec<u8>, String> {
    Ok(event.payload().to_vec())
}

/// Runs a payload through the same exports path the host uses.
fn via_exports(payload: &[u8]) -> Vec<u8> {
    let ptr = crate::__private::alloc(payload.len());
    // SAFETY: `alloc` returned room for `payload.len()` bytes.
    unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), ptr, payload.len()) };
    let mut seen = Vec::new();
    // SAFETY: `ptr` is from `alloc(payload.len())` and fully written.
    let status = unsafe {
        crate::__private::handle(ptr, payload.len(), |event: &Event, _: &Context| {
            seen = event.payload().to_vec();
            Ok::<_, String>("done")
        })
    };
    assert_eq!(status, 0);
    seen
}

#[test]
fn exports_hand_the_payload_to_the_handler() {
    assert_eq!(via_exports(b"{\"value\":1}"), b"{\"value\":1}");
    assert_eq!(via_exports(&[7; 100_000]), vec![7; 100_000]);
}

#[test]
fn an_empty_payload_is_a_valid_event() {
    assert_eq!(via_exports(b""), b"");
    assert_eq!(mock::invoke(echo, b""), Ok(Vec::new()));
}

#[test]
fn an_ok_result_becomes_the_response() {
    assert_eq!(mock::invoke(echo, b"ping"), Ok(b"ping".to_vec()));
}

#[test]
fn an_error_becomes_the_error_message_and_a_failed_status() {
    let fails = |_: &Event, _: &Context| Err::<Vec<u8>, _>("sensor offline");
    assert_eq!(mock::invoke(fails, b"x"), Err("sensor offline".into()));
}

#[test]
fn a_response_over_max_payload_fails_the_invocation_with_its_size() {
    let huge = |_: &Event, _: &Context| Ok::<_, String>(vec![b'a'; 300_000]);
    assert_eq!(
        mock::invoke(huge, b""),
        Err("response of 300000 bytes is larger than max_payload".into())
    );
}

#[test]
fn an_error_message_over_max_payload_is_cut_on_a_char_boundary() {
    let huge = |_: &Event, _: &Context| Err::<Vec<u8>, _>("é".repeat(200_000));
    let message = mock::invoke(huge, b"").unwrap_err();
    assert_eq!(message, "é".repeat(512));
}

#[test]
fn env_values_longer_than_the_first_buffer_are_read_whole() {
    let long = "x".repeat(1000);
    mock::set_env("LONG", &long);
    mock::set_env("EMPTY", "");
    let ctx = Context::new();
    assert_eq!(ctx.env("LONG"), Some(long));
    assert_eq!(ctx.env("EMPTY"), Some(String::new()));
    assert_eq!(ctx.env("UNSET"), None);
}

#[test]
fn context_reports_the_invocation() {
    let ctx = Context::new();
    assert_eq!(ctx.request_id(), "00000000000000a1");
    assert_eq!(ctx.function_name(), "test-function");
    assert_eq!(ctx.function_version(), "$LATEST");
    assert_eq!(ctx.remaining_ms(), 1_000);
    assert_eq!(ctx.memory_limit(), 16 << 20);
    assert_eq!(ctx.attempt(), 1);
    assert_eq!(ctx.deadline_ms(), crate::now_ms() + 1_000);
}

#[test]
fn event_reports_its_source_and_subject() {
    mock::set_event("mqtt", "sensors/t1/temperature");
    let event = Event::new(Vec::new());
    assert_eq!(event.source(), Source::Mqtt);
    assert_eq!(event.subject(), "sensors/t1/temperature");
    assert_eq!(event.received_at_ms(), crate::now_ms());
}

#[test]
fn unknown_sources_keep_their_name() {
    for name in ["mqtt", "sensor", "schedule", "invoke", "webhook"] {
        assert_eq!(Source::from(name).as_str(), name);
    }
    assert_eq!(Source::from("webhook"), Source::Other("webhook".into()));
}

#[cfg(feature = "json")]
#[test]
fn json_decodes_the_payload_or_says_why_not() {
    #[derive(serde::Deserialize)]
    struct Reading<'a> {
        sensor: &'a str,
        value: f64,
    }
    let event = Event::new(br#"{"sensor":"t1","value":2.5}"#.to_vec());
    let reading: Reading = event.json().unwrap();
    assert_eq!((reading.sensor, reading.value), ("t1", 2.5));
    let bad = Event::new(b"{".to_vec());
    assert!(bad.json::<Reading>().is_err());
}

#[test]
fn publish_queues_the_message() {
    publish("alerts/t1", "hot", Qos::AtLeastOnce).unwrap();
    let sent = mock::published();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].topic.as_str(), &sent[0].payload[..], sent[0].qos),
        ("alerts/t1", &b"hot"[..], 1)
    );
}

#[test]
fn publish_errors_map_from_the_host_codes() {
    let cases = [
        (-1, PublishError::Denied),
        (-2, PublishError::Invalid),
        (-3, PublishError::TooLarge),
        (-4, PublishError::Unavailable),
        (-5, PublishError::Limit),
        (-7, PublishError::Throttled),
        (-42, PublishError::Other(-42)),
    ];
    for (code, expected) in cases {
        mock::set_publish_result(code);
        assert_eq!(publish("a/b", b"", Qos::AtMostOnce), Err(expected));
    }
    assert!(mock::published().is_empty());
    assert!(PublishError::Unavailable.is_retryable());
    assert!(PublishError::Throttled.is_retryable());
    assert!(!PublishError::Denied.is_retryable());
}

#[test]
fn publish_to_a_wildcard_topic_is_invalid() {
    assert_eq!(
        publish("alerts/#", b"", Qos::AtMostOnce),
        Err(PublishError::Invalid)
    );
}

#[test]
fn publish_errors_read_as_sentences() {
    assert_eq!(
        PublishError::Denied.to_string(),
        "publish denied: topic is not in allow_publish"
    );
    assert_eq!(
        PublishError::Other(-9).to_string(),
        "publish failed with host code -9"
    );
}

#[test]
fn log_macros_format_and_keep_the_level() {
    crate::info!("x={}", 3);
    crate::warn!("careful");
    crate::log::debug("plain");
    assert_eq!(
        mock::logs(),
        [
            (Level::Info, "x=3".to_string()),
            (Level::Warn, "careful".to_string()),
            (Level::Debug, "plain".to_string()),
        ]
    );
}

#[test]
fn init_errors_fail_the_instance_and_are_logged() {
    assert_eq!(crate::__private::init(crate::__private::no_init), 0);
    assert_eq!(crate::__private::init(|| Err("no config")), 1);
    assert_eq!(
        mock::logs(),
        [(Level::Error, "init failed: no config".to_string())]
    );
}

#[test]
fn forward_records_durable_messages_for_upstream() {
    crate::mock::reset();
    assert_eq!(crate::forward("readings/t1", b"21.5"), Ok(()));
    assert_eq!(
        crate::forward("bad/#", b"x"),
        Err(crate::PublishError::Invalid)
    );
    let forwarded = crate::mock::forwarded();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].topic, "readings/t1");
    assert_eq!(forwarded[0].payload, b"21.5");
    assert!(
        crate::mock::published().is_empty(),
        "forward is not a local publish"
    );
}

#[test]
fn context_names_the_device() {
    assert_eq!(Context::new().device_id(), "test-gateway");
}

#[test]
fn publish_retained_sets_the_retain_flag() {
    crate::publish_retained("state/door", "open", Qos::AtLeastOnce).unwrap();
    publish("events/door", "opened", Qos::AtMostOnce).unwrap();
    let sent = mock::published();
    assert_eq!(
        sent.iter()
            .map(|m| (m.topic.as_str(), m.retain))
            .collect::<Vec<_>>(),
        [("state/door", true), ("events/door", false)]
    );
}

#[test]
fn fill_random_fills_buffers_larger_than_one_host_call() {
    let mut big = vec![0u8; 70_000];
    crate::fill_random(&mut big).unwrap();
    // Both host calls (64 KiB and the rest) wrote varied bytes.
    assert!(big[..1000].iter().any(|b| *b != big[0]));
    assert!(big[66_000..].iter().any(|b| *b != big[66_000]));
}

#[test]
fn a_permanent_failure_returns_status_2_and_others_status_1() {
    use crate::Failure;
    let permanent = |_: &Event, _: &Context| Err::<Vec<u8>, _>(Failure::permanent("bad reading"));
    assert_eq!(mock::invoke(permanent, b"x"), Err("bad reading".into()));
    assert_eq!(mock::last_status(), 2);
    let retryable = |_: &Event, _: &Context| -> Result<Vec<u8>, Failure> {
        Err(crate::PublishError::Unavailable)?
    };
    assert!(mock::invoke(retryable, b"x").is_err());
    assert_eq!(mock::last_status(), 1);
    let plain = |_: &Event, _: &Context| Err::<Vec<u8>, _>("plain text error");
    assert!(mock::invoke(plain, b"x").is_err());
    assert_eq!(mock::last_status(), 1);
}
