//! Real MQTT peers for tests: Debian's mosquitto on a loopback port, and a
//! rumqttc client that records what it receives.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// A mosquitto broker on 127.0.0.1:`port`, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
}

impl Mosquitto {
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, super::free_port())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mosquitto_path() -> &'static str {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("mosquitto")
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listening on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A received message.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub received: Instant,
}

impl Message {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("JSON payload")
    }
}

/// A test MQTT client: publishes, and collects messages on its subscriptions.
pub struct TestClient {
    pub client: Client,
    messages: Receiver<Message>,
}

impl TestClient {
    /// Connects and subscribes to `filters`, waiting for the SUBACK.
    pub fn connect(port: u16, id: &str, filters: &[&str]) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut connection) = Client::new(options, 1024);
        for filter in filters {
            client
                .subscribe(*filter, QoS::AtLeastOnce)
                .expect("subscribe");
        }
        let (sender, messages) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let expected = filters.len();
        std::thread::spawn(move || {
            let mut acks = 0;
            if expected == 0 {
                let _ = ready_tx.send(());
            }
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let message = Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            received: Instant::now(),
                        };
                        if sender.send(message).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == expected {
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("test client subscribed");
        Self { client, messages }
    }

    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .expect("publish");
    }

    /// Waits for the next message.
    pub fn next(&self, timeout: Duration) -> Option<Message> {
        self.messages.recv_timeout(timeout).ok()
    }

    /// Collects messages until `count` arrived or `timeout` passed.
    pub fn collect(&self, count: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) => got.push(m),
                Err(_) => break,
            }
        }
        got
    }

    /// Messages arriving within `quiet` of each other, until a gap.
    pub fn drain(&self, quiet: Duration) -> Vec<Message> {
        let mut got = Vec::new();
        while let Ok(m) = self.messages.recv_timeout(quiet) {
            got.push(m);
        }
        got
    }
}

impl Mosquitto {
    /// Starts mosquitto on a chosen port (e.g. the one a ledge is already
    /// trying to reach).
    pub fn start_on(dir: &Path, port: u16) -> Self {
        let config = dir.join(format!("mosquitto-{port}.conf"));
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        wait_for_port(port, Duration::from_secs(10));
        Self { child, port }
    }

    /// Kills the broker (SIGKILL) and waits for it to be gone.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Mosquitto {
    /// A broker that keeps sessions and queued messages across restarts
    /// (saved in `dir` on SIGTERM), with no queue limit.
    pub fn start_persistent(dir: &Path, port: u16) -> Self {
        let config = dir.join(format!("mosquitto-{port}.conf"));
        let store = dir.join(format!("mosquitto-{port}-store/"));
        std::fs::create_dir_all(&store).expect("store dir");
        // mosquitto started as root drops to user `mosquitto`, which must be
        // able to write its store.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o777))
            .expect("chmod store");
        std::fs::write(
            &config,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}\nautosave_interval 1\nmax_queued_messages 0\nmax_inflight_messages 100\n",
                store.display()
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(mosquitto_path())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        wait_for_port(port, Duration::from_secs(10));
        Self { child, port }
    }

    /// Stops the broker with SIGTERM (it saves its state) and waits.
    pub fn stop(mut self) -> u16 {
        super::process::signal(self.child.id(), "TERM");
        let _ = self.child.wait();
        self.port
    }
}

/// A subscriber with a persistent session (clean_session = false) that
/// survives broker restarts and keeps every message it receives.
pub struct DurableSubscriber {
    messages: Receiver<Message>,
}

impl DurableSubscriber {
    pub fn connect(port: u16, id: &str, filter: &str) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(false);
        options.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut connection) = Client::new(options, 64);
        let (sender, messages) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let filter = filter.to_owned();
        std::thread::spawn(move || {
            let mut subscribed = false;
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if !subscribed => {
                        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) if !subscribed => {
                        subscribed = true;
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let message = Message {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            received: Instant::now(),
                        };
                        if sender.send(message).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // The broker is restarting: keep polling, rumqttc reconnects.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("durable subscriber subscribed");
        Self { messages }
    }

    /// Collects until `done` (shown each new message) returns true, or
    /// `timeout` passes.
    pub fn collect_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Message) -> bool,
    ) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .messages
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(m) => {
                    let finished = done(&m);
                    got.push(m);
                    if finished {
                        return got;
                    }
                }
                Err(_) if Instant::now() >= deadline => return got,
                Err(_) => {}
            }
        }
    }
}

/// A message seen by an MQTT 5 subscriber: topic, payload, user properties.
pub type Message5 = (String, Vec<u8>, Vec<(String, String)>);

/// An MQTT 5 subscriber that records user properties.
pub fn collect_v5(port: u16, filter: &str, count: usize, timeout: Duration) -> Vec<Message5> {
    use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
    use rumqttc::v5::{Client as Client5, Event as Event5, MqttOptions as Options5};
    let options = Options5::new(format!("v5-{port}"), "127.0.0.1", port);
    let (client, mut connection) = Client5::new(options, 64);
    client
        .subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        match connection.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Event5::Incoming(Packet5::Publish(p)))) => {
                let properties = p.properties.map(|p| p.user_properties).unwrap_or_default();
                got.push((
                    String::from_utf8_lossy(&p.topic).into_owned(),
                    p.payload.to_vec(),
                    properties,
                ));
            }
            Ok(Err(_)) => std::thread::sleep(Duration::from_millis(100)),
            _ => {}
        }
    }
    got
}
