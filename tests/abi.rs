//! The guest sees exactly the context and event docs/abi.md promises.

mod common;

use std::sync::Arc;

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
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "probe");
    let text = common::function_toml(
        "probe-fn",
        &module,
        "memory = \"2MiB\"\ntimeout = \"5s\"\nenv = { GREETING = \"hello, gateway\" }",
    );
    let plan = config::load(&common::write_config(dir.path(), &text)).unwrap();
    let runtime = Runtime::new(plan.broker.max_payload).unwrap();
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
