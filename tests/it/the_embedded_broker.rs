//! The embedded broker as local clients see it: no client can take ledge's
//! place, idle connections cannot lock clients out, logins are checked
//! against the users file, retained messages, wills, persistent sessions and
//! QoS 2 behave as MQTT says, oversized payloads are refused with their
//! size, and a taken port is a clear start-up error.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::gateway::{Gateway, Module};
use crate::common::process;
use rumqttc::{Client, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS};

const WAIT: Duration = Duration::from_secs(20);

/// Gateway `gw-b`: `echo` from `echo/in` to `echo/out` on the embedded
/// broker, with `broker_keys` in its `[broker]`.
fn gateway(broker_keys: &str) -> Gateway {
    Gateway::new("gw-b")
        .broker(broker_keys)
        .echo("echo", "echo/in", "echo/out")
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

#[test]
fn no_client_can_take_ledges_client_id_and_events_keep_flowing() {
    let gateway = gateway("");
    let port = gateway.port;
    let mut ledge = gateway.start();
    let client = gateway.client("watcher", &["echo/out"]);
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
    let gateway = gateway("max_connections = 8\nconnect_timeout = \"1s\"");
    let port = gateway.port;
    let mut ledge = gateway.start();
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
    let gateway = gateway("users_file = \"users\"");
    let line = process::ledge_with_stdin(&["passwd", "hub"], b"s3cret\n");
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
    std::fs::write(gateway.dir().join("users"), &line).unwrap();
    let port = gateway.port;
    let mut ledge = gateway.start();
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
    let config = common::write_config(gateway.dir(), &open);
    let output = process::ledge(&["check", "--config", config.to_str().unwrap()]);
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
    let gateway = gateway("");
    let port = gateway.port;
    let mut ledge = gateway.start();
    let publisher = gateway.client("publisher", &[]);

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
    while gateway.metrics()["echo"]["invocations"] != 1 {
        assert!(Instant::now() < deadline, "the QoS 2 message did not run");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ledge.terminate().success());
}

#[test]
fn a_functions_retained_publish_reaches_later_subscribers() {
    let gateway = Gateway::new("gw-r")
        .function(
            "door",
            Module::Fixture("retain"),
            "allow_publish = [\"state/#\"]",
        )
        .mqtt_trigger("door/set", "door");
    let mut ledge = gateway.start();
    let client = gateway.client("setter", &[]);
    client.publish("door/set", "r");
    let deadline = Instant::now() + WAIT;
    while gateway.metrics()["door"]["invocations"] != 1 {
        assert!(Instant::now() < deadline, "the function did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Subscribed only now: the broker kept the message.
    let (late, mut connection) = session(gateway.port, "late-door", true);
    late.subscribe("state/#", QoS::AtLeastOnce).unwrap();
    let kept = next_publish(&mut connection, WAIT).expect("the retained state");
    assert_eq!(
        (&kept.topic[..], &kept.payload[..], kept.retain),
        ("state/door", &b"open"[..], true)
    );
    assert!(ledge.terminate().success());
}

#[test]
fn oversized_payloads_are_rejected_and_non_json_passes_through() {
    let gateway = Gateway::new("e2e")
        .broker("max_payload = \"1KiB\"")
        .echo("echo", "echo/in", "echo/out");
    let mut ledge = gateway.start();
    let client = gateway.client("e2e-client", &["echo/out"]);
    client.publish("echo/in", vec![b'x'; 2048]);
    ledge.wait_for_line(
        "rejected: 2048 bytes is over max_payload (1024 bytes)",
        WAIT,
    );
    let binary = vec![0u8, 0xff, 0xfe, b'{', 0x80];
    client.publish("echo/in", binary.clone());
    let reply = client.next(WAIT).expect("echo of binary payload");
    assert_eq!(reply.payload, binary, "bytes pass through untouched");
    assert!(
        client.drain(Duration::from_millis(300)).is_empty(),
        "the oversized one never ran"
    );
}

#[test]
fn a_taken_broker_port_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let gateway = Gateway::new("e2e")
        .embedded_broker_on(port)
        .echo("echo", "echo/in", "echo/out");
    gateway.write();
    let output = gateway.cli(&["run"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && stderr.contains("another MQTT broker"),
        "{stderr}"
    );
}
