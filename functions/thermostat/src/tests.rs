use ledge_sdk::mock;

use super::*;

fn reading(value: f64) -> Vec<u8> {
    format!(r#"{{"sensor":"room","value":{value},"unit":"C","quality":"ok"}}"#).into_bytes()
}

fn run(payload: &[u8]) -> serde_json::Value {
    let response = mock::invoke(handle, payload).unwrap();
    serde_json::from_slice(&response).unwrap()
}

#[test]
fn hysteresis_keeps_the_relay_between_the_thresholds() {
    assert!(decide(18.9, false, 19.0, 21.0));
    assert!(!decide(20.0, false, 19.0, 21.0));
    assert!(decide(20.0, true, 19.0, 21.0));
    assert!(decide(21.0, true, 19.0, 21.0));
    assert!(!decide(21.1, true, 19.0, 21.0));
}

#[test]
fn the_relay_switches_on_below_low_and_off_above_high_only() {
    mock::reset();
    mock::set_gpio_output("heater", false);
    mock::set_event("sensor", "room");
    let steps = [
        (20.0, false),
        (18.5, true),
        (20.0, true),
        (21.0, true),
        (21.5, false),
        (19.5, false),
    ];
    for (value, heating) in steps {
        let report = run(&reading(value));
        assert_eq!(report["heating"], heating, "at {value}");
        assert_eq!(mock::gpio("heater"), Some(heating), "at {value}");
    }
    // Two switches, two alerts, each both local and upstream.
    let alerts = mock::published();
    assert_eq!(alerts.len(), 2);
    assert!(alerts.iter().all(|a| a.topic == "alerts/thermostat"));
    let forwarded = mock::forwarded();
    assert_eq!(
        forwarded
            .iter()
            .filter(|f| f.topic == "thermostat/readings")
            .count(),
        6
    );
    assert_eq!(
        forwarded
            .iter()
            .filter(|f| f.topic == "thermostat/alerts")
            .count(),
        2
    );
}

#[test]
fn a_sensor_error_turns_the_heater_off_and_alerts() {
    mock::reset();
    mock::set_gpio_output("boiler", true);
    mock::set_env("RELAY", "boiler");
    let report =
        run(br#"{"sensor":"room","value":null,"quality":"error","error":"CRC check failed"}"#);
    assert_eq!(report["heating"], false);
    assert_eq!(report["error"], "CRC check failed");
    assert_eq!(mock::gpio("boiler"), Some(false));
    assert_eq!(mock::published().len(), 1);
}

#[test]
fn settings_are_checked_and_a_missing_relay_permission_is_an_error() {
    mock::reset();
    mock::set_env("LOW", "22");
    mock::set_env("HIGH", "20");
    assert!(
        mock::invoke(handle, &reading(20.0))
            .unwrap_err()
            .contains("LOW must not be above HIGH")
    );
    mock::reset();
    let err = mock::invoke(handle, &reading(20.0)).unwrap_err();
    assert!(
        err.contains("relay `heater`") && err.contains("allow_gpio"),
        "{err}"
    );
}
