//! mqtts:// upstream with mutual TLS, as AWS IoT Core requires: a CA, a
//! server certificate for 127.0.0.1 and a client certificate, all made by
//! openssl for this test; mosquitto requires the client certificate. An
//! upstream ledge cannot trust gets nothing: the event waits in the spool.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common;
use crate::common::broker::TestClient;
use crate::common::gateway::Gateway;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Makes `<name>.key`/`<name>.crt` signed by `ca`, with `san` if given.
fn certificate(dir: &Path, name: &str, cn: &str, san: Option<&str>, ca: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let subject = format!("/CN={cn}");
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
    openssl(dir, &args);
    let ext = format!("{name}.ext");
    let extensions = match san {
        Some(san) => format!("subjectAltName={san}\n"),
        None => "extendedKeyUsage=clientAuth\n".to_owned(),
    };
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let (ca_crt, ca_key, crt) = (
        format!("{ca}.crt"),
        format!("{ca}.key"),
        format!("{name}.crt"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

fn make_pki(dir: &Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
            ],
        );
    }
    certificate(dir, "server", "127.0.0.1", Some("IP:127.0.0.1"), "ca");
    certificate(dir, "client", "gw-tls", None, "ca");
    // mosquitto drops root privileges and must still read its key.
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

struct TlsBroker {
    child: Child,
    tls_port: u16,
    plain_port: u16,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_broker(dir: &Path) -> TlsBroker {
    let (tls_port, plain_port) = (common::free_port(), common::free_port());
    let config = format!(
        "per_listener_settings false\nallow_anonymous true\n\
         listener {tls_port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\nrequire_certificate true\n\
         listener {plain_port} 127.0.0.1\n",
        d = dir.display()
    );
    let path = dir.join("mosquitto-tls.conf");
    std::fs::write(&path, config).unwrap();
    let child = Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    common::broker::wait_for_port(tls_port, Duration::from_secs(10));
    common::broker::wait_for_port(plain_port, Duration::from_secs(10));
    TlsBroker {
        child,
        tls_port,
        plain_port,
    }
}

/// A gateway whose upstream is a TLS broker requiring a client
/// certificate; the gateway trusts CA `ca` (`ca` signed the broker's).
fn tls_gateway(ca: &str) -> (Gateway, TlsBroker) {
    let gateway = Gateway::new("gw-tls");
    make_pki(gateway.dir());
    let broker = start_tls_broker(gateway.dir());
    let d = gateway.dir().display().to_string();
    let gateway = gateway.append(&format!(
        "[upstream]\nurl = \"mqtts://127.0.0.1:{}\"\nca_file = \"{d}/{ca}.crt\"\ncert_file = \"{d}/client.crt\"\nkey_file = \"{d}/client.key\"\n\
         [[forward]]\ntopic = \"data/#\"",
        broker.tls_port
    ));
    (gateway, broker)
}

#[test]
fn events_reach_upstream_over_mutual_tls() {
    let (gateway, broker) = tls_gateway("ca");
    let backend = TestClient::connect(broker.plain_port, "backend", &["ledge/+/events/#"]);
    let mut ledge = gateway.start();
    ledge.wait_for_log("connected to upstream", Duration::from_secs(20));
    let producer = gateway.client("producer", &[]);
    producer.publish("data/secure", "over tls");
    let message = backend
        .next(Duration::from_secs(20))
        .expect("delivered over TLS");
    assert_eq!(message.topic, "ledge/gw-tls/events/data/secure");
    assert_eq!(message.text(), "over tls");
}

#[test]
fn an_untrusted_server_certificate_is_refused_and_nothing_is_sent() {
    // ledge trusts a different CA than the one that signed the server.
    let (gateway, broker) = tls_gateway("other-ca");
    let backend = TestClient::connect(broker.plain_port, "backend", &["ledge/+/events/#"]);
    let mut ledge = gateway.start();
    let line = ledge.wait_for_log("ledge::uplink", Duration::from_secs(20));
    assert!(
        line.to_lowercase().contains("certificate") || line.contains("Tls"),
        "{line}"
    );
    let producer = gateway.client("producer", &[]);
    producer.publish("data/secure", "must not leak");
    assert!(backend.next(Duration::from_secs(2)).is_none());
    let status = gateway.status();
    assert_eq!(status["uplink"]["connected"], false);
    assert_eq!(
        status["uplink"]["lag_records"], 1,
        "the event waits in the spool"
    );
}
