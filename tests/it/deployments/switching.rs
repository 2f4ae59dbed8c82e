//! Switching versions loses and repeats nothing: an alias moved from v1 to
//! v2 (from the CLI, or over the air) while events stream runs each event
//! once, on one version or the other; weighted aliases split events within
//! statistical bounds, durable triggers included; synchronous invokes reach
//! the alias or version they name; a kill -9 during a switch leaves one
//! target or the other.

use super::*;
use crate::common::process;

#[test]
fn deploying_v2_while_events_stream_through_v1_loses_and_repeats_nothing() {
    let gateway = gateway("tag:live");
    let config = gateway.write();
    let v1 = tagged(gateway.dir(), "v1", false);
    let v2 = tagged(gateway.dir(), "v2", false);
    // Offline, before ledge starts.
    let out = cli(
        &config,
        &[
            "deploy",
            "tag",
            v1.to_str().unwrap(),
            "--publish",
            "--alias",
            "live",
        ],
    );
    assert!(out.contains("published tag:1"), "{out}");
    assert!(out.contains("takes effect when it starts"), "{out}");

    let mut ledge = gateway.start();
    let client = gateway.client("deploy-client", &["out/#"]);
    const EVENTS: u32 = 600;
    let mut switched = false;
    for id in 0..EVENTS {
        client.publish("in/x", format!("e{id}"));
        std::thread::sleep(Duration::from_millis(2));
        if id == EVENTS / 2 {
            let out = cli(
                &config,
                &[
                    "deploy",
                    "tag",
                    v2.to_str().unwrap(),
                    "--publish",
                    "--alias",
                    "live",
                    "--no-watch",
                ],
            );
            assert!(out.contains("applied by the running ledge"), "{out}");
            switched = true;
        }
    }
    assert!(switched);
    let got = client.collect(EVENTS as usize, WAIT);
    let extra = client.drain(Duration::from_millis(500));
    let runs = runs(&got.iter().chain(&extra).cloned().collect::<Vec<_>>());
    let lost: Vec<u32> = (0..EVENTS).filter(|id| !runs.contains_key(id)).collect();
    assert!(lost.is_empty(), "lost {lost:?}\n{}", ledge.log_text());
    let twice: Vec<(&u32, &Vec<String>)> = runs.iter().filter(|(_, r)| r.len() > 1).collect();
    assert!(twice.is_empty(), "run twice: {twice:?}");
    let tag_of = |id: u32| runs[&id][0].clone();
    assert_eq!(tag_of(0), "v1");
    assert_eq!(tag_of(EVENTS - 1), "v2");
    // One switch: every event before the last v1 ran on v1.
    let last_v1 = (0..EVENTS).filter(|id| tag_of(*id) == "v1").max().unwrap();
    let first_v2 = (0..EVENTS).filter(|id| tag_of(*id) == "v2").min().unwrap();
    assert!(
        last_v1 < first_v2 + 50,
        "versions interleave: last v1 {last_v1}, first v2 {first_v2}"
    );
    assert!(!runs.values().any(|r| r[0] == "v0"), "$LATEST ran");
    assert_eq!(ledge.terminate().code(), Some(0));

    // The store says so too, and after a restart it still routes to v2.
    let out = cli(&config, &["functions"]);
    assert!(out.contains("live=2"), "{out}");
    let mut ledge = gateway.start();
    client.publish("in/x", format!("e{EVENTS}"));
    let after = client.collect(1, WAIT);
    assert_eq!(after.first().map(|m| m.topic.as_str()), Some("out/v2"));
    let out = cli(&config, &["rollback", "tag", "live"]);
    assert!(out.contains("-> 1 (rolled back from 2)"), "{out}");
    client.publish("in/x", format!("e{}", EVENTS + 1));
    let after = client.collect(1, WAIT);
    assert_eq!(
        after.first().map(|m| m.topic.as_str()),
        Some("out/v1"),
        "{}",
        ledge.log_text()
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn deploying_over_the_air_while_events_stream_loses_and_repeats_nothing() {
    let (gateway, seed) = ota_gateway("");
    let mut ledge = gateway.start();
    ledge.wait_for_log("listening for deployments on ledge/gw/deploy", WAIT);
    let client = gateway.client("stream-client", &["out/#"]);
    let module = std::fs::read(tagged(gateway.dir(), "v2", false)).unwrap();
    let d = deployment(2, &module, 100);
    const EVENTS: u32 = 600;
    for id in 0..EVENTS {
        client.publish("in/x", format!("e{id}"));
        std::thread::sleep(Duration::from_millis(2));
        if id == 100 {
            publish_document(&client, &d, "ops", &seed);
            for (index, chunk) in module.chunks(100).enumerate() {
                publish_chunk(&client, &d, index, chunk);
            }
        }
    }
    let got = client.collect(EVENTS as usize, WAIT);
    let extra = client.drain(Duration::from_millis(500));
    let runs = runs(&got.iter().chain(&extra).cloned().collect::<Vec<_>>());
    let lost: Vec<u32> = (0..EVENTS).filter(|id| !runs.contains_key(id)).collect();
    assert!(lost.is_empty(), "lost {lost:?}\n{}", ledge.log_text());
    assert!(
        runs.values().all(|r| r.len() == 1),
        "an event ran twice: {:?}",
        runs.iter().filter(|(_, r)| r.len() > 1).collect::<Vec<_>>()
    );
    assert_eq!(runs[&0][0], "v1");
    assert_eq!(runs[&(EVENTS - 1)][0], "v2", "{}", ledge.log_text());
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_weighted_alias_splits_events_within_statistical_bounds() {
    let gateway = gateway("tag:live");
    let config = gateway.write();
    for tag in ["v1", "v2"] {
        let module = tagged(gateway.dir(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    let out = cli(
        &config,
        &["alias", "set", "tag", "live", "1", "--weight", "2=20"],
    );
    assert!(out.contains("live -> 1 (80%), 2 (20%)"), "{out}");
    let mut ledge = gateway.start();
    let client = gateway.client("split-client", &["out/#"]);
    const EVENTS: usize = 1000;
    for id in 0..EVENTS {
        client.publish("in/x", format!("e{id}"));
        if id % 100 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let got = client.collect(EVENTS, WAIT);
    assert_eq!(got.len(), EVENTS, "{}", ledge.log_text());
    let canary = got.iter().filter(|m| m.topic == "out/v2").count();
    // Binomial(1000, 0.2): mean 200, sd 12.6; ±5 sd.
    assert!(
        (137..=263).contains(&canary),
        "{canary} of {EVENTS} went to the 20% canary"
    );
    assert_eq!(
        got.iter().filter(|m| m.topic == "out/v1").count() + canary,
        EVENTS
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_durable_trigger_splits_its_stream_between_an_alias_and_its_canary() {
    let gateway = gateway("tag:live").append("durable = true");
    let config = gateway.write();
    for tag in ["v1", "v2"] {
        let module = tagged(gateway.dir(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(
        &config,
        &[
            "alias",
            "set",
            "tag",
            "live",
            "1",
            "--weight",
            "2=30",
            "--no-watch",
        ],
    );
    let mut ledge = gateway.start();
    let client = gateway.client("durable-split", &["out/#"]);
    const EVENTS: u32 = 300;
    for id in 0..EVENTS {
        client.publish("in/x", format!("e{id}"));
    }
    let got = client.collect(EVENTS as usize, WAIT);
    let runs = runs(&got);
    assert_eq!(runs.len(), EVENTS as usize, "{}", ledge.log_text());
    assert!(runs.values().all(|r| r.len() == 1), "an event ran twice");
    let canary = runs.values().filter(|r| r[0] == "v2").count();
    // Binomial(300, 0.3): mean 90, sd 7.9; ±5 sd.
    assert!(
        (50..=130).contains(&canary),
        "{canary} of {EVENTS} on the canary"
    );
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn synchronous_invokes_reach_the_alias_or_version_they_name() {
    let gateway = gateway("tag:live");
    let config = gateway.write();
    for tag in ["v1", "v2"] {
        let module = tagged(gateway.dir(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(&config, &["alias", "set", "tag", "live", "1", "--no-watch"]);
    let mut ledge = gateway.start();
    let client = gateway.client("sync-client", &["out/#"]);
    let invoke = |name: &str, payload: &str| -> String {
        let out = cli(&config, &["invoke", name, "--remote", "--event", payload]);
        assert!(out.contains("status    ok"), "{out}");
        client.collect(1, WAIT)[0].topic.clone()
    };
    assert_eq!(invoke("tag:live", "e1"), "out/v1");
    assert_eq!(invoke("tag:1", "e2"), "out/v1");
    // A bare name is $LATEST: the last module deployed.
    assert_eq!(invoke("tag", "e3"), "out/v2");
    cli(&config, &["alias", "set", "tag", "live", "2", "--no-watch"]);
    assert_eq!(invoke("tag:live", "e4"), "out/v2", "{}", ledge.log_text());
    assert_eq!(ledge.terminate().code(), Some(0));
}

#[test]
fn a_kill_9_during_an_alias_switch_leaves_one_target_or_the_other() {
    let gateway = gateway("tag:live");
    let config = gateway.write();
    for tag in ["v1", "v2"] {
        let module = tagged(gateway.dir(), tag, false);
        cli(
            &config,
            &["deploy", "tag", module.to_str().unwrap(), "--publish"],
        );
    }
    cli(&config, &["alias", "set", "tag", "live", "1", "--no-watch"]);
    let client = gateway.client("switch-client", &["out/#"]);
    for round in 0..3u32 {
        let mut ledge = gateway.start();
        let target = if round % 2 == 0 { "2" } else { "1" };
        let switch = std::thread::spawn({
            let config = config.clone();
            move || {
                let mut all = vec![
                    "alias",
                    "set",
                    "tag",
                    "live",
                    target,
                    "--no-watch",
                    "--config",
                ];
                all.push(config.to_str().unwrap());
                process::ledge(&all)
            }
        });
        std::thread::sleep(Duration::from_millis(5 + u64::from(round) * 7));
        process::signal(ledge.pid(), "KILL");
        ledge.wait(Duration::from_secs(10));
        let _ = switch.join();
        let now = alias_target(&config, "live")["version"].as_u64().unwrap();
        assert!(now == 1 || now == 2);
        let mut ledge = gateway.start();
        let expected = format!("v{now}");
        assert_eq!(serving(&client, round), expected, "{}", ledge.log_text());
        assert_eq!(ledge.terminate().code(), Some(0));
    }
}
