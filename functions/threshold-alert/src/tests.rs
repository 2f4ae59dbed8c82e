use ledge_sdk::log::Level;
use ledge_sdk::mock;

use super::handle;

fn invoke(payload: &str) -> Result<String, String> {
    mock::invoke(handle, payload.as_bytes()).map(|bytes| String::from_utf8(bytes).unwrap())
}

#[test]
fn a_reading_above_the_threshold_publishes_an_alert() {
    assert_eq!(
        invoke(r#"{"value":31.5,"sensor":"t1"}"#),
        Ok(r#"{"alert":true,"sensor":"t1","value":31.5}"#.into())
    );
    let sent = mock::published();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].topic, "alerts/t1");
    assert_eq!(sent[0].qos, 1);
    assert_eq!(
        String::from_utf8_lossy(&sent[0].payload),
        r#"{"sensor":"t1","value":31.5,"threshold":30.0,"request_id":"00000000000000a1"}"#
    );
}

#[test]
fn an_alert_is_logged_once_at_info() {
    invoke(r#"{"value":31.5,"sensor":"t1"}"#).unwrap();
    let logs = mock::logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].0, Level::Info);
    assert_eq!(
        logs[0].1,
        r#"alert sent to alerts/t1: {"sensor":"t1","value":31.5,"threshold":30.0,"request_id":"00000000000000a1"}"#
    );
}

#[test]
fn a_reading_at_or_below_the_threshold_only_responds() {
    assert_eq!(
        invoke(r#"{"value":30,"sensor":"t1","unit":"C"}"#),
        Ok(r#"{"alert":false,"sensor":"t1","value":30.0}"#.into())
    );
    assert_eq!(
        invoke("-4.25"),
        Ok(r#"{"alert":false,"sensor":"unknown","value":-4.25}"#.into())
    );
    assert!(mock::published().is_empty());
    assert!(mock::logs().is_empty());
}

#[test]
fn the_threshold_comes_from_env() {
    mock::set_env("THRESHOLD", " 10.5 ");
    assert_eq!(
        invoke("11"),
        Ok(r#"{"alert":true,"sensor":"unknown","value":11.0}"#.into())
    );
    assert_eq!(
        String::from_utf8_lossy(&mock::published()[0].payload),
        r#"{"sensor":"unknown","value":11.0,"threshold":10.5,"request_id":"00000000000000a1"}"#
    );
}

#[test]
fn a_non_numeric_threshold_is_an_error_naming_it() {
    for bad in ["warm", "", "NaN", "inf", "1e999", "30C"] {
        mock::set_env("THRESHOLD", bad);
        assert_eq!(
            invoke("1"),
            Err(format!("THRESHOLD is not a number: {bad:?}"))
        );
    }
}

#[test]
fn the_sensor_comes_from_the_topic_when_the_payload_has_none() {
    mock::set_event("mqtt", "sensors/greenhouse/temperature");
    invoke("35").unwrap();
    assert_eq!(mock::published()[0].topic, "alerts/greenhouse");
}

#[test]
fn the_sensor_comes_from_a_sensor_event() {
    mock::set_event("sensor", "bme280");
    assert_eq!(
        invoke("1"),
        Ok(r#"{"alert":false,"sensor":"bme280","value":1.0}"#.into())
    );
}

#[test]
fn a_payload_that_is_not_a_reading_is_an_error() {
    for payload in ["", "hot", r#"{"sensor":"t1"}"#, r#"{"value":"31.5"}"#] {
        let err = invoke(payload).unwrap_err();
        assert!(
            err.starts_with("payload is not a reading: "),
            "{payload:?} gave {err}"
        );
    }
    assert!(mock::published().is_empty());
}

#[test]
fn a_failed_publish_is_an_error_with_the_reason() {
    mock::set_publish_result(-1);
    assert_eq!(
        invoke(r#"{"value":99,"sensor":"t1"}"#),
        Err(
            "alert for t1 not sent to alerts/t1: publish denied: topic is not in allow_publish"
                .into()
        )
    );
}
