//! GPIO through the real binary, on the file-backed fake chip
//! (`[device] gpio_fake`): debounced edges, active-low inputs, pin names
//! from a board profile, actuators in their safe state at start, at SIGTERM
//! and after the writing function crashes, `allow_gpio`, board profiles
//! from `[device]` or the command line, and `ledge boards`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::fake_hw::{level, set_level, RPI4_CHIP};
use crate::common::gateway::Gateway;
use crate::common::process::{ledge, Ledge};

const WAIT: Duration = Duration::from_secs(20);

/// `[device]` keys: board rpi4, GPIO on the fake chip in `gpio/`.
const RPI4_FAKE: &str = "board = \"rpi4\"\ngpio_fake = \"gpio\"";

/// The JSON events sensor `name` produced, from ledge's debug log.
fn events(ledge: &Ledge, name: &str) -> Vec<serde_json::Value> {
    let marker = format!("sensor {name}: {{");
    ledge
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| line.find(&marker).map(|i| &line[i + marker.len() - 1..]))
        .map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}")))
        .collect()
}

fn wait_for_events(ledge: &Ledge, name: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = events(ledge, name);
        if seen.len() >= count || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(config: &Path, watching: usize) -> Ledge {
    let mut ledge = Ledge::spawn(config, &[("LEDGE_LOG", "info,ledge::sensor=debug")]);
    ledge.wait_for_log("running as", WAIT);
    // Sensors say they are watching before or after the start-up summary.
    let deadline = std::time::Instant::now() + WAIT;
    while ledge.log_text().matches("edges").count() < watching {
        assert!(
            std::time::Instant::now() < deadline,
            "{watching} sensors never watched; log:\n{}",
            ledge.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ledge
}

#[test]
fn a_bounce_within_the_debounce_window_is_one_edge_and_active_low_inverts() {
    let gateway = Gateway::new("g1").device(RPI4_FAKE).append(
        "[[sensor]]\nname = \"button\"\nkind = \"gpio\"\npin = \"GPIO17\"\nedge = \"both\"\ndebounce = \"800ms\"\nbias = \"pull-down\"\n\
         [[sensor]]\nname = \"raw\"\nkind = \"gpio\"\npin = \"PIN15\"\nedge = \"both\"\n\
         [[sensor]]\nname = \"door\"\nkind = \"gpio\"\npin = \"PIN16\"\nedge = \"rising\"\nactive_low = true",
    );
    let chip = gateway.dir().join("gpio").join(RPI4_CHIP);
    for line in [17, 22, 23] {
        set_level(&chip, line, 0);
    }
    let mut ledge = start(&gateway.write(), 3);

    // GPIO17 (button) and GPIO22 (raw, PIN15) bounce 1, 0, 1 within 400 ms
    // and then hold: the debounced one reports one rising edge, the raw one
    // all three changes.
    for level in [1, 0, 1] {
        set_level(&chip, 17, level);
        set_level(&chip, 22, level);
        std::thread::sleep(Duration::from_millis(200));
    }
    let raw = wait_for_events(&ledge, "raw", 3);
    let button = wait_for_events(&ledge, "button", 1);
    std::thread::sleep(Duration::from_millis(800));
    let button_after = events(&ledge, "button");
    assert_eq!(
        button_after.len(),
        1,
        "a bounce made several edges: {button_after:?}"
    );
    assert_eq!(
        (
            &button[0]["value"],
            &button[0]["edge"],
            &button[0]["quality"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!("rising"),
            &serde_json::json!("ok")
        )
    );
    assert_eq!(button[0]["sensor"], "button");
    assert!(button[0]["ts"].as_u64().unwrap() > 1_600_000_000_000);
    let raw_edges: Vec<&str> = raw.iter().map(|e| e["edge"].as_str().unwrap()).collect();
    assert_eq!(
        raw_edges,
        ["rising", "falling", "rising"],
        "without debounce every change counts"
    );
    // A clean release is one falling edge.
    set_level(&chip, 17, 0);
    let button = wait_for_events(&ledge, "button", 2);
    assert_eq!(
        (&button[1]["value"], &button[1]["edge"]),
        (&serde_json::json!(0), &serde_json::json!("falling"))
    );

    // The door contact is active-low: held low it is logically 1 (no edge at
    // start). Going high is a logical falling edge, which `edge = "rising"`
    // ignores; low again is a logical rising edge.
    set_level(&chip, 23, 1);
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        events(&ledge, "door").is_empty(),
        "{:?}",
        events(&ledge, "door")
    );
    set_level(&chip, 23, 0);
    let door = wait_for_events(&ledge, "door", 1);
    assert_eq!(
        (&door[0]["value"], &door[0]["edge"]),
        (&serde_json::json!(1), &serde_json::json!("rising"))
    );
    let log = ledge.log_text();
    assert!(
        log.contains("watching pinctrl-bcm2711 line 17 (GPIO17)"),
        "{log}"
    );
    assert!(ledge.terminate().success());
}

struct Rig {
    _gateway: Gateway,
    chip: PathBuf,
    config: PathBuf,
}

/// A relay (active-low, safe state off, restored on crash), a lamp (not
/// restored on crash) and a door input; `switch` may use all three,
/// `intruder` (the same module) none.
fn actuator_rig() -> Rig {
    let gateway = Gateway::new("g2").device(RPI4_FAKE).append(
        "[[gpio_output]]\nname = \"relay\"\npin = \"GPIO27\"\ndefault = 0\nactive_low = true\nrestore_on_crash = true\n\
         [[gpio_output]]\nname = \"lamp\"\nline = 5\nrestore_on_crash = false\n\
         [[sensor]]\nname = \"door\"\nkind = \"gpio\"\npin = \"GPIO23\"\nactive_low = true\nedge = \"rising\"",
    );
    let chip = gateway.dir().join("gpio").join(RPI4_CHIP);
    set_level(&chip, 23, 0);
    let module = gateway.fixture("gpio");
    let gateway = gateway
        .function(
            "switch",
            module.as_path(),
            "allow_gpio = [\"relay\", \"lamp\", \"door\"]\ntimeout = \"300ms\"",
        )
        .function("intruder", module, "");
    let config = gateway.write();
    Rig {
        _gateway: gateway,
        chip,
        config,
    }
}

/// `ledge invoke <function> --remote --event <event>`: the response.
fn invoke(config: &Path, function: &str, event: &str) -> serde_json::Value {
    let output = ledge(&[
        "invoke",
        function,
        "--remote",
        "--json",
        "--config",
        config.to_str().unwrap(),
        "--event",
        event,
    ]);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn actuators_start_safe_need_permission_and_return_to_safe_on_crash_and_stop() {
    let rig = actuator_rig();
    let mut ledge = start(&rig.config, 1);
    // Safe state at start: relay off, which is high on an active-low line.
    assert_eq!(level(&rig.chip, 27), "1", "relay");
    assert_eq!(level(&rig.chip, 5), "0", "lamp");

    // Permitted: on is low.
    assert_eq!(invoke(&rig.config, "switch", "1relay")["response"], "0");
    assert_eq!(level(&rig.chip, 27), "0");
    // Refused: ERR_DENIED (-1), the line untouched, and a warning that says why.
    assert_eq!(invoke(&rig.config, "intruder", "0relay")["response"], "-1");
    assert_eq!(level(&rig.chip, 27), "0");
    ledge.wait_for_log("gpio_write(relay) denied: not in allow_gpio", WAIT);
    assert_eq!(invoke(&rig.config, "intruder", "rdoor")["response"], "-1");
    // Reads: the door is held low, so logically closed (1); the relay is on.
    assert_eq!(invoke(&rig.config, "switch", "rdoor")["response"], "1");
    // The door opens: a logical falling edge, which its `edge = "rising"`
    // does not report, but gpio_read still sees.
    set_level(&rig.chip, 23, 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(invoke(&rig.config, "switch", "rdoor")["response"], "0");
    assert_eq!(invoke(&rig.config, "switch", "rrelay")["response"], "1");
    // An input is not an output.
    assert_eq!(invoke(&rig.config, "switch", "1door")["response"], "-2");

    // A crash after writing: the relay goes back to safe; the lamp, which
    // opted out of restore_on_crash, stays where it was put.
    assert_eq!(invoke(&rig.config, "switch", "1lamp")["response"], "0");
    assert_eq!(invoke(&rig.config, "switch", "0relay")["response"], "0");
    assert_eq!(level(&rig.chip, 27), "1");
    let crashed = invoke(&rig.config, "switch", "trelay");
    assert_eq!(crashed["status"], "error", "{crashed}");
    assert_eq!(
        level(&rig.chip, 27),
        "1",
        "relay not restored after the crash"
    );
    assert_eq!(
        level(&rig.chip, 5),
        "1",
        "lamp restored despite restore_on_crash = false"
    );
    ledge.wait_for_log("switch crashed after writing relay", WAIT);
    // A timeout mid-call is a crash too.
    let timed_out = invoke(&rig.config, "switch", "lrelay");
    assert!(
        timed_out["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{timed_out}"
    );
    assert_eq!(
        level(&rig.chip, 27),
        "1",
        "relay not restored after the timeout"
    );

    // SIGTERM: everything back to safe.
    assert_eq!(invoke(&rig.config, "switch", "1relay")["response"], "0");
    assert_eq!(level(&rig.chip, 27), "0");
    assert!(ledge.terminate().success());
    assert_eq!(level(&rig.chip, 27), "1", "relay left on after SIGTERM");
    assert_eq!(level(&rig.chip, 5), "0", "lamp left on after SIGTERM");
}

#[test]
fn the_safe_state_is_set_at_start_whatever_the_line_held() {
    let rig = actuator_rig();
    // A previous run died with the relay on (low) and the lamp on.
    set_level(&rig.chip, 27, 0);
    set_level(&rig.chip, 5, 1);
    let mut ledge = start(&rig.config, 1);
    assert_eq!(level(&rig.chip, 27), "1");
    assert_eq!(level(&rig.chip, 5), "0");
    ledge.wait_for_log(
        "relay on pinctrl-bcm2711 line 27 (GPIO27) set to its safe state 0",
        WAIT,
    );
    assert!(ledge.terminate().success());
}

#[test]
fn ledge_boards_lists_every_profile_and_shows_one() {
    let output = ledge(&["boards"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for name in [
        "zero2w",
        "rpi-zero",
        "rpi3",
        "rpi4",
        "cm4",
        "rpi5",
        "generic-aarch64",
        "generic-armv7",
        "generic-x86_64",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name}: {stdout}"
        );
    }
    let rpi5 = stdout.lines().find(|l| l.starts_with("rpi5 ")).unwrap();
    assert!(
        rpi5.contains("aarch64-unknown-linux-musl")
            && rpi5.contains("pinctrl-rp1")
            && rpi5.contains("large"),
        "{rpi5}"
    );
    let zero = stdout.lines().find(|l| l.starts_with("rpi-zero ")).unwrap();
    assert!(
        zero.contains("arm-unknown-linux-musleabihf") && zero.contains("small"),
        "{zero}"
    );

    let output = ledge(&["boards", "rpi4"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("PIN11    line 17"), "{stdout}");
    assert!(stdout.contains("labelled pinctrl-bcm2711"), "{stdout}");
    let output = ledge(&["boards", "rpi9"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown board `rpi9`"));
}

#[test]
fn board_defaults_apply_and_explicit_config_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "gpio");
    let base = "[device]\nboard = \"rpi4\"\ndata_dir = \"data\"\n".to_owned();
    let config = common::write_config(
        dir.path(),
        &(base.clone() + &common::function_toml("f", &module, "")),
    );
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "--config", config.to_str().unwrap()];
        args.extend_from_slice(extra);
        let output = ledge(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // [device] board = "rpi4": its 16MiB function memory.
    let stdout = check(&[]);
    assert!(
        stdout.contains("board     rpi4") && stdout.contains("memory 16MiB"),
        "{stdout}"
    );
    // --board wins over [device] board: the Zero 2 W's 8MiB.
    let stdout = check(&["--board", "zero2w"]);
    assert!(
        stdout.contains("board     zero2w") && stdout.contains("memory 8MiB"),
        "{stdout}"
    );
    // An explicit memory wins over the board.
    std::fs::write(
        &config,
        base + &common::function_toml("f", &module, "memory = \"4MiB\""),
    )
    .unwrap();
    let stdout = check(&["--board", "zero2w"]);
    assert!(stdout.contains("memory 4MiB"), "{stdout}");
}

#[test]
fn a_reload_releases_the_line_before_requesting_it_again() {
    let gateway = Gateway::new("g3").device(RPI4_FAKE).append(
        "[[sensor]]\nname = \"button\"\nkind = \"gpio\"\npin = \"GPIO17\"\nedge = \"both\"",
    );
    let chip = gateway.dir().join("gpio").join(RPI4_CHIP);
    set_level(&chip, 17, 0);
    let config = gateway.write();
    let mut ledge = start(&config, 1);

    // The new config watches the same line for rising edges only. The old
    // request must be gone before the new one is made: the fake chip, like
    // the kernel, refuses a line that is still held.
    let rising = gateway
        .text()
        .replace("edge = \"both\"", "edge = \"rising\"");
    std::fs::write(&config, rising).unwrap();
    common::process::signal(ledge.pid(), "HUP");
    let line = loop {
        let line = ledge.wait_for_line("reload", WAIT);
        if line.contains("reloaded:") || line.contains("reload failed") {
            break line;
        }
    };
    assert!(line.contains("reloaded:"), "{line}\n{}", ledge.log_text());
    // The new sensor may say so before or after the reload's summary line.
    ledge.wait_for_log("for rising edges", WAIT);
    set_level(&chip, 17, 1);
    let seen = wait_for_events(&ledge, "button", 1);
    assert_eq!(seen[0]["edge"], "rising", "{seen:?}");
    set_level(&chip, 17, 0);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        events(&ledge, "button").len(),
        1,
        "the old sensor is still watching"
    );
    let log = ledge.log_text();
    assert!(!log.contains("in use"), "{log}");
    assert!(ledge.terminate().success());
}

#[test]
fn ledge_run_takes_the_board_from_the_command_line() {
    // No [device] board: the pin name means something only with --board.
    let gateway = Gateway::new("g4")
        .device("gpio_fake = \"gpio\"")
        .append("[[gpio_output]]\nname = \"relay\"\npin = \"GPIO27\"\ndefault = 1");
    let config = gateway.write();
    let output = ledge(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("needs a board profile"));

    // `ledge run --board rpi5 --config ...`, through a shell so the
    // helper's `run --config <file>` lands around the flag.
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        "exec \"$0\" \"$1\" --board rpi5 \"$2\" \"$3\"",
        common::process::ledge_bin(),
    ]);
    let mut ledge = Ledge::spawn_command(command, &config, &[]);
    ledge.wait_for_line("running as `g4`", WAIT);
    // The Pi 5's header chip, found by its label.
    assert_eq!(level(&gateway.dir().join("gpio/pinctrl-rp1"), 27), "1");
    assert!(ledge.terminate().success());
}
