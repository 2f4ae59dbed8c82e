//! The guest sees exactly the context and event docs/abi.md promises.

use std::sync::Arc;

use crate::common;

use ledge::config;
use ledge::event::{Event, EventSource};
use ledge::runtime::{Instance, Invocation, InvokeError, Runtime};
use ledge::sinks::capture::CaptureSink;

struct Probe {
    _dir: tempfile::TempDir,
    instance: Instance,
    event: Arc<Event>,
}

fn probe() -> Probe {
    probe_on(None)
}

/// The probe on a runtime told it runs on `device` (if any).
fn probe_on(device: Option<&str>) -> Probe {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "probe");
    let text = common::function_toml(
        "probe-fn",
        &module,
        "memory = \"2MiB\"\ntimeout = \"5s\"\nenv = { GREETING = \"hello, gateway\" }",
    );
    let plan = config::load(&common::write_config(dir.path(), &text)).unwrap();
    let mut runtime = Runtime::new(plan.broker.max_payload).unwrap();
    if let Some(device) = device {
        runtime = runtime.with_device_id(device);
    }
    let function = runtime.load(plan.functions[0].clone()).unwrap();
    let instance = Instance::new(&function, Arc::new(CaptureSink::default()), true, true).unwrap();
    let event = Arc::new(Event::new(
        EventSource::Mqtt,
        "sensors/t9/reading",
        &b"?"[..],
    ));
    Probe {
        _dir: dir,
        instance,
        event,
    }
}

impl Probe {
    fn ask(&mut self, question: u8) -> Result<Vec<u8>, InvokeError> {
        let mut event = (*self.event).clone();
        event.payload = vec![question].into();
        let invocation = Invocation {
            request_id: "feedfacecafebeef".to_owned(),
            event: Arc::new(event),
            attempt: 2,
        };
        self.instance.invoke(&invocation).result
    }

    fn text(&mut self, question: u8) -> String {
        String::from_utf8(self.ask(question).unwrap()).unwrap()
    }

    fn int(&mut self, question: u8) -> i64 {
        let bytes: [u8; 8] = self.ask(question).unwrap().try_into().unwrap();
        i64::from_le_bytes(bytes)
    }
}

#[test]
fn string_fields_carry_the_invocation_and_event() {
    let mut probe = probe();
    assert_eq!(probe.text(b's'), "sensors/t9/reading");
    assert_eq!(probe.text(b'r'), "feedfacecafebeef");
    assert_eq!(probe.text(b'n'), "probe-fn");
    assert_eq!(probe.text(b'v'), "$LATEST");
    assert_eq!(probe.text(b'o'), "mqtt");
}

#[test]
fn env_lookups_return_values_or_not_found() {
    let mut probe = probe();
    assert_eq!(probe.text(b'e'), "hello, gateway");
    assert_eq!(probe.text(b'x'), "missing");
}

#[test]
fn integer_fields_carry_limits_time_and_attempt() {
    let mut probe = probe();
    let remaining = probe.int(b'R');
    assert!(remaining > 4_000 && remaining <= 5_000, "{remaining}");
    assert_eq!(probe.int(b'M'), 2 << 20);
    assert_eq!(probe.int(b'A'), 2);
    let received = probe.event.received_at_ms as i64;
    assert_eq!(probe.int(b'T'), received);
    let deadline = probe.int(b'D');
    let now = ledge::event::unix_ms() as i64;
    assert!(
        deadline > now && deadline <= now + 5_000,
        "{deadline} vs {now}"
    );
}

#[test]
fn a_non_zero_status_is_an_error_carrying_the_guest_message() {
    let mut probe = probe();
    assert_eq!(
        probe.ask(b'f'),
        Err(InvokeError::Handler("bad things".to_owned()))
    );
    assert_eq!(
        probe.ask(b'F'),
        Err(InvokeError::Handler("handler returned status 3".to_owned()))
    );
    // A handler error is the guest's own decision: the instance stays warm.
    assert!(!InvokeError::Handler(String::new()).poisons_instance());
    assert_eq!(probe.text(b'n'), "probe-fn");
}

#[test]
fn the_device_id_is_a_context_field() {
    assert_eq!(probe_on(Some("gw-7")).text(b'd'), "gw-7");
    // A runtime not told its device (a library user) has no such field.
    assert_eq!(probe().text(b'd'), "missing");
}

#[test]
fn status_2_is_a_permanent_failure_that_keeps_the_instance() {
    let mut probe = probe();
    let error = probe.ask(b'P').unwrap_err();
    assert_eq!(error, InvokeError::Permanent("bad things".to_owned()));
    assert!(error.is_permanent());
    assert_eq!(error.kind(), "permanent_error");
    assert!(!error.poisons_instance());
    // Other failures stay retryable.
    assert!(!probe.ask(b'f').unwrap_err().is_permanent());
    assert!(!probe.ask(b'F').unwrap_err().is_permanent());
    assert_eq!(probe.text(b'n'), "probe-fn");
}

/// Loads fixture `name` with `extra` config and one warm instance.
fn fixture_instance(name: &str, extra: &str) -> (tempfile::TempDir, Instance, Arc<CaptureSink>) {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), name);
    let text = common::function_toml(name, &module, extra);
    let plan = config::load(&common::write_config(dir.path(), &text)).unwrap();
    let function = Runtime::new(plan.broker.max_payload)
        .unwrap()
        .load(plan.functions[0].clone())
        .unwrap();
    let sink = Arc::new(CaptureSink::default());
    let instance = Instance::new(&function, sink.clone(), true, true).unwrap();
    (dir, instance, sink)
}

fn run(instance: &mut Instance, payload: &[u8]) -> Vec<u8> {
    let invocation = Invocation {
        request_id: "feedfacecafebeef".to_owned(),
        event: Arc::new(Event::new(EventSource::Invoke, "", payload.to_vec())),
        attempt: 1,
    };
    instance
        .invoke(&invocation)
        .result
        .expect("invocation succeeds")
}

#[test]
fn publish_flags_retains_and_plain_publish_does_not() {
    let (_dir, mut instance, sink) = fixture_instance("retain", "allow_publish = [\"state/#\"]");
    assert_eq!(run(&mut instance, b"r"), [0]);
    assert_eq!(run(&mut instance, b"p"), [0]);
    let sent = sink.take();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        (sent[0].topic.as_str(), sent[0].retain),
        ("state/door", true)
    );
    assert_eq!(
        (sent[1].topic.as_str(), sent[1].retain),
        ("state/door", false)
    );
    // An unknown flag is refused (ERR_INVALID), nothing is sent.
    assert_eq!(run(&mut instance, b"x"), [(-2i8) as u8]);
    assert!(sink.take().is_empty());
}

#[test]
fn random_fills_buffers_with_fresh_bytes_up_to_its_cap() {
    let (_dir, mut instance, _) = fixture_instance("random", "");
    let first = run(&mut instance, b"s");
    let second = run(&mut instance, b"s");
    assert_eq!(first.len(), 64);
    // 256 random bits repeating, or coming back all zero, is a broken source.
    assert_ne!(first[..32], first[32..]);
    assert_ne!(first, second);
    assert_ne!(first[..32], [0; 32]);
    assert_eq!(
        run(&mut instance, b"b"),
        [(-3i8) as u8],
        "over MAX_RANDOM is ERR_TOO_LARGE"
    );
}
