//! `ledge invoke NAME --remote`: a synchronous invocation of a function in
//! the running ledge, over its local broker (see `dispatch::sync` for the
//! envelope). No retries: the exit status reports what the function did.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

use super::CliError;
use crate::config::Plan;

/// Extra time beyond the function's own timeout for queueing and the trip
/// through the broker.
const SLACK: Duration = Duration::from_secs(10);

pub fn invoke(plan: &Plan, function: &str, payload: &[u8], json: bool) -> Result<(), CliError> {
    let (host, port) = plan.broker.mode.client_address();
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        crate::event::unix_ms() % 1_000_000
    );
    let mut options = MqttOptions::new(format!("cli-invoke-{nonce}"), host.clone(), port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(
        plan.broker
            .max_payload
            .saturating_mul(4)
            .saturating_add(64 << 10),
        plan.broker.max_payload.saturating_add(64 << 10),
    );
    if let Some(user) = &plan.broker.username {
        let password = plan.broker.password.as_ref().map_or("", |p| p.expose());
        options.set_credentials(user.clone(), password);
    }
    let device = &plan.device.id;
    let reply_to = format!("ledge/{device}/reply/{nonce}");
    let request_topic = format!("ledge/{device}/invoke/{function}");
    let timeout = plan
        .functions
        .iter()
        .find(|f| f.name == function)
        .map_or(Duration::from_secs(30), |f| f.timeout)
        + SLACK;

    let (client, mut connection) = Client::new(options, 16);
    let failed = |what: String| CliError::Failed(anyhow!(what));
    client
        .subscribe(reply_to.clone(), QoS::AtLeastOnce)
        .map_err(|e| failed(format!("cannot subscribe to {reply_to}: {e}")))?;
    let envelope = crate::dispatch::sync::request_envelope(&reply_to, &nonce, payload);
    let deadline = Instant::now() + timeout;
    let mut sent = false;
    let reply = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(failed(format!(
                "no reply from ledge `{device}` on {host}:{port} within {}s (is `ledge run` running with this config?)",
                timeout.as_secs()
            )));
        }
        match connection.recv_timeout(left) {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if !sent => {
                sent = true;
                client
                    .publish(
                        request_topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        envelope.to_string(),
                    )
                    .map_err(|e| failed(format!("cannot send the request: {e}")))?;
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == reply_to => {
                let document: Value = serde_json::from_slice(&p.payload)
                    .map_err(|e| failed(format!("the reply is not JSON: {e}")))?;
                if document["correlation_id"] == nonce.as_str() {
                    break document;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(failed(format!(
                    "cannot reach the local broker at {host}:{port}: {e}"
                )))
            }
            Err(_) => {}
        }
    };
    let _ = client.disconnect();
    print(&reply, json);
    let status = reply["status"].as_str().unwrap_or("?");
    let error = reply["error"].as_str().unwrap_or("");
    match status {
        "ok" => Ok(()),
        "not_found" => Err(CliError::Usage(anyhow!("{error}"))),
        _ => Err(failed(format!(
            "function {function} request {} {status}: {error}",
            reply["request_id"].as_str().unwrap_or("-")
        ))),
    }
}

fn print(reply: &Value, json: bool) {
    if json {
        println!("{reply}");
        return;
    }
    let field = |key: &str| reply[key].as_str().unwrap_or("-").to_owned();
    match reply["version"].as_str() {
        Some(version) => println!("function  {} ({version})", field("function")),
        None => println!("function  {}", field("function")),
    }
    println!("request   {}", field("request_id"));
    if let Some(ms) = reply["duration_ms"].as_f64() {
        println!("duration  {ms:.3} ms");
    }
    println!("status    {}", field("status"));
    match reply["status"].as_str() {
        Some("ok") => println!("response  {}", field("response")),
        _ => println!("error     {}", field("error")),
    }
}
