//! Every config error names its file:line:col (and a problem in a file the
//! config names, that file's): syntax, values, cron expressions that never
//! fire, retry settings, publish rates, batching, sensor keys, GPIO pins
//! and lines used twice, keep-alives the MQTT client would refuse. `ledge check` exits 2.

use super::ledge_bounded;
use crate::common;
use crate::common::gateway::Gateway;
use crate::common::process::ledge;

#[test]
fn check_reports_config_errors_as_file_line_column_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        "[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\ntimeout = \"soon\"\n\n[[trigger]]\nsource = \"mqtt\"\ntopic = \"a/#\"\nfunction = \"nope\"\n",
    );
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = config.display().to_string();
    assert!(
        stderr.contains(&format!("{path}:4:11: `soon` does not start with a number")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{path}:9:12: trigger names unknown function `nope`"
        )),
        "{stderr}"
    );
}

#[test]
fn check_fails_on_a_missing_module_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        "[device]\nid = \"x\"\n\n[[function]]\nname = \"f\"\nmodule = \"gone.wasm\"\n",
    );
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:6:10: function `f`: module", config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("gone.wasm does not exist"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAILED TO LOAD"));
}

#[test]
fn check_on_a_missing_file_says_so() {
    let output = ledge(&["check", "--config", "/nonexistent/ledge.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("/nonexistent/ledge.toml: cannot read config"));
}

#[test]
fn a_non_utf8_config_names_the_line_and_column_of_the_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ledge.toml");
    std::fs::write(&config, b"[device]\nid = \"g\xffw\"\n").unwrap();
    let (code, output) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains(&format!("{}:2:8:", config.display())) && output.contains("UTF-8"),
        "{output}"
    );
}

#[test]
fn check_refuses_a_cron_expression_that_can_never_fire_at_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::example("echo");
    for (expr, why) in [
        ("0 0 31 2 *", "no month in it has that day"),
        ("0 0 30 2 *", "no month in it has that day"),
        ("0 0 31 4,6,9,11 */7", "no month in it has that day"),
    ] {
        let config = common::write_config(
            dir.path(),
            &format!(
                "{}[[trigger]]\nsource = \"schedule\"\ncron = \"{expr}\"\nfunction = \"f\"\n",
                common::function_toml("f", &module, "")
            ),
        );
        let output = ledge(&["check", "--config", config.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{expr}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "{}:7:8: bad cron expression: `{expr}` never fires: {why}",
                config.display()
            )),
            "{expr}: {stderr}"
        );
    }
    // Rare is not never: 29 February on a Sunday comes every 28 or 40 years.
    let config = common::write_config(
        dir.path(),
        &format!(
            "{}[[trigger]]\nsource = \"schedule\"\ncron = \"0 0 29 2 */7\"\nfunction = \"f\"\n",
            common::function_toml("f", &module, "")
        ),
    );
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn bad_cron_expressions_and_time_zones_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let echo = common::example("echo");
    let text = format!(
        "[[function]]\nname = \"f\"\nmodule = \"{}\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\ncron = \"61 * * * *\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\ncron = \"@daily\"\ntimezone = \"Mars/Olympus\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\ncron = \"@daily\"\ncatch_up = \"twice\"\n\
         [[trigger]]\nsource = \"mqtt\"\ntopic = \"a\"\nfunction = \"f\"\njitter = \"1s\"\n",
        echo.display()
    );
    let config = common::write_config(dir.path(), &text);
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = config.display().to_string();
    for expected in [
        format!("{path}:7:8: bad cron expression: minute 61 is out of range 0-59"),
        format!("{path}:12:12: unknown time zone `Mars/Olympus`"),
        format!("{path}:17:12: unknown catch_up `twice`"),
        format!("{path}:22:10: `jitter` does not apply to a `mqtt` trigger"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }

    // A good one, in an IANA zone, is listed in the routing table.
    let text = format!(
        "[[function]]\nname = \"f\"\nmodule = \"{}\"\n\
         [[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\ncron = \"30 7 * * MON-FRI\"\ntimezone = \"Europe/Berlin\"\njitter = \"30s\"\ncatch_up = \"once\"\n",
        echo.display()
    );
    let config = common::write_config(dir.path(), &text);
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("schedule cron 30 7 * * MON-FRI (Europe/Berlin)"),
        "{stdout}"
    );
}

#[test]
fn bad_retry_settings_are_rejected_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "ok");
    for (setting, message) in [
        ("retries = 11", "retries must be between 0 and 10"),
        ("on_failure = \"dlx\"", "on_failure must be"),
        ("on_failure = \"topic:a/#\"", "on_failure must be"),
        ("retry_backoff = \"soon\"", "retry_backoff"),
    ] {
        let text = common::function_toml("f", &module, setting);
        let config = common::write_config(dir.path(), &text);
        let output = ledge(&["check", "--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{setting}: {stderr}");
        let location = format!("{}:4:", config.display());
        assert!(stderr.contains(&location), "{setting}: {stderr}");
        if setting.starts_with("retry_backoff") {
            continue;
        }
        assert!(stderr.contains(message), "{setting}: {stderr}");
    }
}

#[test]
fn durable_triggers_of_one_function_must_agree_on_batching() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "ok");
    let text = common::function_toml("f", &module, "")
        + &common::mqtt_trigger("a", "f")
        + "batch_size = 5\n"
        + &common::mqtt_trigger("b", "f")
        + "durable = true\n";
    let config = common::write_config(dir.path(), &text);
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("share one stream"), "{stderr}");
}

#[test]
fn bad_bme280_keys_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[[sensor]]\nname = \"a\"\nkind = \"bme280\"\naddress = 0x99\nmeasure = \"light\"\n\
                [[sensor]]\nname = \"b\"\nkind = \"bme280\"\nbus = 300\n";
    let config = common::write_config(dir.path(), text);
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let path = config.display().to_string();
    for expected in [
        format!("{path}:4:11: an I2C address is 0x03-0x77"),
        format!("{path}:5:11: unknown measure `light`"),
        format!("{path}:9:7: an I2C bus number is 0-255"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_reports_unknown_pins_and_lines_at_file_line() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "gpio");
    let mut text = "[device]\nboard = \"rpi4\"\ndata_dir = \"data\"\n\
        [[gpio_output]]\nname = \"relay\"\npin = \"GPIO99\"\n\
        [[sensor]]\nname = \"b\"\nkind = \"gpio\"\npin = \"PIN1\"\n"
        .to_owned();
    text += &common::function_toml("f", &module, "allow_gpio = [\"pump\"]");
    let config = common::write_config(dir.path(), &text);
    let output = ledge(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = config.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{file}:6:7: pin `GPIO99` does not exist on board rpi4"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:10:7: pin `PIN1` does not exist on board rpi4"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:14:15: allow_gpio names unknown GPIO line `pump`"
        )),
        "{stderr}"
    );
    // A generic board names no pins at all.
    let output = ledge(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        "--board",
        "generic-aarch64",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("it names no pins: give `chip` and `line`"),
        "{stderr}"
    );
}

#[test]
fn two_gpio_outputs_on_one_line_are_refused_with_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[device]\nid = \"gw\"\nboard = \"rpi4\"\n\
                [[gpio_output]]\nname = \"pump\"\npin = \"GPIO17\"\n\
                [[gpio_output]]\nname = \"fan\"\npin = \"PIN11\"\n";
    let config = common::write_config(dir.path(), text);
    let (code, output) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{output}");
    let file = config.display().to_string();
    assert!(
        output.contains(&format!("{file}:9:")) && output.contains(&format!("{file}:6:")),
        "{output}"
    );
    assert!(
        output.contains("pump") && output.contains("fan"),
        "{output}"
    );
}

#[test]
fn keep_alives_the_mqtt_client_would_refuse_are_config_errors_not_a_crash() {
    let upstream = Gateway::new("gw")
        .with_upstream()
        .upstream("keep_alive = \"2s\"");
    let config = upstream.write();
    let (code, out) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("ledge.toml:8:14") && out.contains("keep_alive must be between 5s and 65535s"),
        "{out}"
    );
    let (code, out) = ledge_bounded(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    // The local broker's, when it is external.
    let port = upstream.upstream.as_ref().unwrap().port;
    let external = Gateway::new("gw")
        .broker_at(port)
        .broker("keep_alive = \"1s\"")
        .upstream_at(port);
    let config = external.write();
    let (code, out) = ledge_bounded(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("keep_alive must be between 5s and 65535s"),
        "{out}"
    );
}

#[test]
fn bad_publish_rates_are_rejected_at_their_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let module = common::fixture(dir.path(), "ok");
    for (setting, place, message) in [
        (
            "publish_rate = \"fast\"",
            "4:16",
            "publish_rate: `fast` is not a rate",
        ),
        ("publish_rate = \"0/s\"", "4:16", "above zero"),
        (
            "publish_rate = \"10/fortnight\"",
            "4:16",
            "the period `fortnight` is not a duration",
        ),
        (
            "publish_burst = 10",
            "4:17",
            "publish_burst needs a publish_rate",
        ),
        (
            "publish_rate = \"10/s\"\npublish_burst = 0",
            "5:17",
            "must be between 1 and 1000000",
        ),
    ] {
        let text = common::function_toml("f", &module, setting);
        let config = common::write_config(dir.path(), &text);
        let output = ledge(&["check", "--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{setting}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("{}:{place}: ", config.display())));
        assert!(
            line.is_some_and(|l| l.contains(message)),
            "{setting}: {stderr}"
        );
    }
}
