//! The embedded broker as local clients see it: each message runs each
//! function once however many of its filters match (on every broker path),
//! no client can take ledge's place, idle connections cannot lock clients
//! out, logins are checked against the users file, and retained messages,
//! wills, persistent sessions and QoS 2 behave as MQTT says.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::broker::{Mosquitto, TestClient};
use common::process::Ledge;
use rumqttc::{Client, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};

const WAIT: Duration = Duration::from_secs(20);

fn metrics(config: &Path) -> serde_json::Value {
    let output =
        common::process::ledge(&["metrics", "--json", "--config", config.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The CONNACK a client gets: `Ok(())` if accepted.
fn connect(port: u16, id: &str, login: Option<(&str, &str)>) -> Result<(), String> {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    if let Some((user, password)) = login {
        options.set_credentials(user, password);
    }
    let (_client, mut connection) = Client::new(options, 10);
    match connection.recv_timeout(WAIT) {
        Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) if ack.code == ConnectReturnCode::Success => {
            Ok(())
        }
        Ok(Err(ConnectionError::ConnectionRefused(code))) => Err(format!("{code:?}")),
        other => Err(format!("{other:?}")),
    }
}

/// `one` on `a/+` and `a/#`, `other` on `a/b`, `a/#` forwarded upstream.
fn overlapping(dir: &Path, broker: &str, upstream: u16) -> std::path::PathBuf {
    let echo = common::example("echo");
    let text = format!(
        "[device]\nid = \"gw-dup\"\ndata_dir = \"data\"\n[broker]\n{broker}\n\
         [upstream]\nurl = \"mqtt://127.0.0.1:{upstream}\"\nkeep_alive = \"5s\"\n\
         [[forward]]\ntopic = \"a/#\"\n{}{}{}{}{}",
        common::function_toml("one", &echo, ""),
        common::mqtt_trigger("a/+", "one"),
        common::mqtt_trigger("a/#", "one"),
        common::function_toml("other", &echo, ""),
        common::mqtt_trigger("a/b", "other"),
    );
    common::write_config(dir, &text)
}

fn each_message_runs_once(external: bool) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Mosquitto::start(dir.path());
    let backend = TestClient::connect(upstream.port, "backend", &["ledge/gw-dup/events/#"]);
    let local = external.then(|| Mosquitto::start(dir.path()));
    let (broker, port) = match &local {
        Some(mosquitto) => (
            format!("url = \"mqtt://127.0.0.1:{}\"", mosquitto.port),
            mosquitto.port,
        ),
        None => {
            let port = common::free_port();
            (format!("listen = \"127.0.0.1:{port}\""), port)
        }
    };
    let config = overlapping(dir.path(), &broker, upstream.port);
    let mut ledge = Ledge::start(&config);
    let producer = TestClient::connect(port, "producer", &[]);
    for i in 0..20 {
        producer.publish("a/b", format!("{i}"));
    }
    let forwarded = backend.collect(20, WAIT);
    assert_eq!(forwarded.len(), 20, "{}", ledge.log_text());
    assert!(
        backend.drain(Duration::from_millis(500)).is_empty(),
        "a message was forwarded twice"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let m = metrics(&config);
        let (one, other) = (
            m["one"]["invocations"].clone(),
            m["other"]["invocations"].clone(),
        );
        if one == 20 && other == 20 {
            break;
        }
        assert!(
            one.as_u64() <= Some(20) && other.as_u64() <= Some(20),
            "ran more than once: {m}"
        );
        assert!(Instant::now() < deadline, "not all ran: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ledge.terminate().success());
}

#[test]
fn each_message_runs_each_function_once_however_many_filters_match_on_the_embedded_broker() {
    each_message_runs_once(false);
}

#[test]
fn each_message_runs_each_function_once_however_many_filters_match_through_mosquitto() {
    each_message_runs_once(true);
}

fn gateway(dir: &Path, port: u16, broker_extra: &str) -> std::path::PathBuf {
    let echo = common::example("echo");
    let text = format!(
        "[device]\nid = \"gw-b\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{port}\"\n{broker_extra}\n{}{}",
        common::function_toml("echo", &echo, "env = { ECHO_TOPIC = \"echo/out\" }\nallow_publish = [\"echo/out\"]"),
        common::mqtt_trigger("echo/in", "echo"),
    );
    common::write_config(dir, &text)
}

#[test]
fn no_client_can_take_ledges_client_id_and_events_keep_flowing() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = gateway(dir.path(), port, "");
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(port, "watcher", &["echo/out"]);
    for i in 0..100 {
        if i % 10 == 0 {
            assert_eq!(
                connect(port, "ledge-gw-b", None),
                Err("BadClientId".to_owned())
            );
        }
        client.publish("echo/in", format!("{i}"));
    }
    assert_eq!(client.collect(100, WAIT).len(), 100, "{}", ledge.log_text());
    ledge.wait_for_log("the prefix `ledge-` is reserved for ledge", WAIT);
    assert!(ledge.terminate().success());
}

#[test]
fn idle_sockets_are_closed_at_the_connect_deadline_and_the_limit_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = gateway(
        dir.path(),
        port,
        "max_connections = 8\nconnect_timeout = \"1s\"",
    );
    let mut ledge = Ledge::start(&config);
    // Eight idle sockets take every slot; the ninth is closed at once.
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut ninth = TcpStream::connect(("127.0.0.1", port)).unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let refused_at = Instant::now();
    assert_eq!(
        ninth.read(&mut [0u8; 8]).unwrap_or(1),
        0,
        "over the limit: closed"
    );
    assert!(refused_at.elapsed() < Duration::from_millis(500));
    ledge.wait_for_log("connections already open (max_connections)", WAIT);
    // The idle ones never said CONNECT: closed after a second, and a real
    // client gets in.
    for mut socket in idle {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            socket.read(&mut [0u8; 8]).unwrap_or(1),
            0,
            "an idle socket stayed open"
        );
    }
    assert_eq!(connect(port, "late", None), Ok(()));
    assert!(ledge.terminate().success());
}

#[test]
fn with_a_users_file_only_known_users_connect() {
    let dir = tempfile::tempdir().unwrap();
    let line = common::process::ledge_with_stdin(&["passwd", "hub"], b"s3cret\n");
    assert!(
        line.status.success(),
        "{}",
        String::from_utf8_lossy(&line.stderr)
    );
    let line = String::from_utf8(line.stdout).unwrap();
    assert!(
        !line.contains("s3cret"),
        "the password itself is not stored"
    );
    std::fs::write(dir.path().join("users"), &line).unwrap();
    let port = common::free_port();
    let config = gateway(dir.path(), port, "users_file = \"users\"");
    let mut ledge = Ledge::start(&config);
    assert_eq!(connect(port, "anon", None), Err("NotAuthorized".to_owned()));
    assert_eq!(
        connect(port, "wrong", Some(("hub", "guess"))),
        Err("BadUserNamePassword".to_owned())
    );
    assert_eq!(connect(port, "right", Some(("hub", "s3cret"))), Ok(()));
    let log = ledge.log_text();
    assert!(!log.contains("s3cret") && !log.contains("guess"), "{log}");
    assert!(ledge.terminate().success());

    // Beyond loopback a users file is required.
    let open = format!(
        "[broker]\nlisten = \"0.0.0.0:{port}\"\n{}",
        common::function_toml("echo", &common::example("echo"), "")
    );
    let config = common::write_config(dir.path(), &open);
    let output = common::process::ledge(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(":2:10:") && stderr.contains("without a users_file"),
        "{stderr}"
    );
}

/// A rumqttc client with a persistent or clean session, collecting messages.
fn session(port: u16, id: &str, clean: bool) -> (Client, rumqttc::Connection) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(clean);
    Client::new(options, 100)
}

/// The next message within `timeout`, polling `connection`.
fn next_publish(
    connection: &mut rumqttc::Connection,
    timeout: Duration,
) -> Option<rumqttc::Publish> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
            connection.recv_timeout(Duration::from_millis(100))
        {
            return Some(p);
        }
    }
    None
}

#[test]
fn retained_messages_wills_persistent_sessions_and_qos2_behave_as_mqtt_says() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = gateway(dir.path(), port, "");
    let mut ledge = Ledge::start(&config);
    let publisher = TestClient::connect(port, "publisher", &[]);

    // Retained: a later subscriber gets the last value, with RETAIN set.
    publisher
        .client
        .publish("cfg/mode", QoS::AtLeastOnce, true, "eco")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (late, mut late_conn) = session(port, "late", true);
    late.subscribe("cfg/#", QoS::AtLeastOnce).unwrap();
    let retained = next_publish(&mut late_conn, WAIT).expect("the retained message");
    assert_eq!(
        (&retained.topic[..], &retained.payload[..], retained.retain),
        ("cfg/mode", &b"eco"[..], true)
    );

    // A persistent session keeps QoS 1 messages while its client is away.
    let (away, mut away_conn) = session(port, "away", false);
    away.subscribe("news", QoS::AtLeastOnce).unwrap();
    while !matches!(
        away_conn.recv_timeout(WAIT),
        Ok(Ok(Event::Incoming(Packet::SubAck(_))))
    ) {}
    drop(away_conn);
    drop(away);
    std::thread::sleep(Duration::from_millis(300));
    publisher.publish("news", "while you were out");
    std::thread::sleep(Duration::from_millis(300));
    let (_back, mut back_conn) = session(port, "away", false);
    let kept = next_publish(&mut back_conn, WAIT).expect("the queued message");
    assert_eq!(&kept.payload[..], b"while you were out");

    // A will is published when its client vanishes without DISCONNECT.
    let (watcher, mut watch_conn) = session(port, "watcher2", true);
    watcher.subscribe("status/dev", QoS::AtLeastOnce).unwrap();
    while !matches!(
        watch_conn.recv_timeout(WAIT),
        Ok(Ok(Event::Incoming(Packet::SubAck(_))))
    ) {}
    let mut options = MqttOptions::new("mortal", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_last_will(rumqttc::LastWill::new(
        "status/dev",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let (_mortal, mut mortal_conn) = Client::new(options, 10);
    assert!(matches!(
        mortal_conn.recv_timeout(WAIT),
        Ok(Ok(Event::Incoming(Packet::ConnAck(_))))
    ));
    drop(mortal_conn); // the socket closes without a DISCONNECT
    let will = next_publish(&mut watch_conn, WAIT).expect("the will");
    assert_eq!(&will.payload[..], b"gone");

    // QoS 2 in: delivered once, the handshake completes.
    let (q2, mut q2_conn) = session(port, "q2", true);
    q2.publish("echo/in", QoS::ExactlyOnce, false, "twice?")
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut completed = false;
    while !completed && Instant::now() < deadline {
        if let Ok(Ok(Event::Incoming(Packet::PubComp(_)))) =
            q2_conn.recv_timeout(Duration::from_millis(100))
        {
            completed = true;
        }
    }
    assert!(completed, "no PUBCOMP");
    let deadline = Instant::now() + WAIT;
    while metrics(&config)["echo"]["invocations"] != 1 {
        assert!(Instant::now() < deadline, "the QoS 2 message did not run");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ledge.terminate().success());
}

#[test]
fn a_functions_retained_publish_reaches_later_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let text = format!(
        "[device]\nid = \"gw-r\"\ndata_dir = \"data\"\n[broker]\nlisten = \"127.0.0.1:{port}\"\n{}{}",
        common::function_toml(
            "door",
            &common::fixture(dir.path(), "retain"),
            "allow_publish = [\"state/#\"]"
        ),
        common::mqtt_trigger("door/set", "door"),
    );
    let config = common::write_config(dir.path(), &text);
    let mut ledge = Ledge::start(&config);
    let client = TestClient::connect(port, "setter", &[]);
    client.publish("door/set", "r");
    let deadline = Instant::now() + WAIT;
    while metrics(&config)["door"]["invocations"] != 1 {
        assert!(Instant::now() < deadline, "the function did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Subscribed only now: the broker kept the message.
    let (late, mut connection) = session(port, "late-door", true);
    late.subscribe("state/#", QoS::AtLeastOnce).unwrap();
    let kept = next_publish(&mut connection, WAIT).expect("the retained state");
    assert_eq!(
        (&kept.topic[..], &kept.payload[..], kept.retain),
        ("state/door", &b"open"[..], true)
    );
    assert!(ledge.terminate().success());
}
