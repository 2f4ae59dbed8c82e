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
