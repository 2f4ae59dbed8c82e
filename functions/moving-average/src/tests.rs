use ledge_sdk::mock;

use super::handle;

fn invoke(payload: &str) -> Result<String, String> {
    mock::invoke(handle, payload.as_bytes()).map(|bytes| String::from_utf8(bytes).unwrap())
}

fn reading(sensor: &str, value: f64) -> String {
    format!(r#"{{"sensor":"{sensor}","value":{value}}}"#)
}

#[test]
fn each_reading_responds_with_the_running_average() {
    assert_eq!(
        invoke(&reading("t1", 20.0)),
        Ok(r#"{"sensor":"t1","average":20.0,"count":1}"#.into())
    );
    assert_eq!(
        invoke(&reading("t1", 21.0)),
        Ok(r#"{"sensor":"t1","average":20.5,"count":2}"#.into())
    );
    assert!(mock::published().is_empty());
}

#[test]
fn a_full_window_is_published_and_starts_over() {
    mock::set_env("WINDOW", "3");
    for value in [1.0, 2.0] {
        invoke(&reading("t1", value)).unwrap();
    }
    assert_eq!(
        invoke(&reading("t1", 6.0)),
        Ok(r#"{"sensor":"t1","average":3.0,"count":3}"#.into())
    );
    let sent = mock::published();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].topic.as_str(), sent[0].qos), ("averages/t1", 0));
    assert_eq!(
        String::from_utf8_lossy(&sent[0].payload),
        r#"{"sensor":"t1","average":3.0,"count":3}"#
    );
    assert_eq!(
        invoke(&reading("t1", 7.0)),
        Ok(r#"{"sensor":"t1","average":7.0,"count":1}"#.into())
    );
}

#[test]
fn the_default_window_is_five_readings() {
    for _ in 0..4 {
        invoke("1").unwrap();
    }
    assert!(mock::published().is_empty());
    assert_eq!(
        invoke("1"),
        Ok(r#"{"sensor":"unknown","average":1.0,"count":5}"#.into())
    );
    assert_eq!(mock::published().len(), 1);
}

#[test]
fn sensors_are_averaged_separately() {
    mock::set_env("WINDOW", "2");
    invoke(&reading("a", 1.0)).unwrap();
    invoke(&reading("b", 100.0)).unwrap();
    assert_eq!(
        invoke(&reading("a", 3.0)),
        Ok(r#"{"sensor":"a","average":2.0,"count":2}"#.into())
    );
    let sent = mock::published();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].topic, "averages/a");
}

#[test]
fn the_sensor_comes_from_the_topic_when_the_payload_has_none() {
    mock::set_env("WINDOW", "1");
    mock::set_event("mqtt", "sensors/t7/temperature");
    invoke("3.5").unwrap();
    assert_eq!(mock::published()[0].topic, "averages/t7");
}

#[test]
fn a_failed_publish_leaves_the_window_for_a_retry() {
    mock::set_env("WINDOW", "2");
    invoke(&reading("t1", 1.0)).unwrap();
    mock::set_publish_result(-4);
    let err = invoke(&reading("t1", 3.0)).unwrap_err();
    assert!(
        err.starts_with("average for t1 not sent to averages/t1: publish unavailable"),
        "{err}"
    );
    mock::set_publish_result(0);
    assert_eq!(
        invoke(&reading("t1", 3.0)),
        Ok(r#"{"sensor":"t1","average":2.0,"count":2}"#.into())
    );
    assert_eq!(mock::published().len(), 1);
}

#[test]
fn a_bad_window_is_an_error_naming_it() {
    for bad in ["0", "-1", "five", "2.5", ""] {
        mock::set_env("WINDOW", bad);
        assert_eq!(
            invoke("1"),
            Err(format!(
                "WINDOW is not a whole number of at least 1: {bad:?}"
            ))
        );
    }
}

#[test]
fn a_payload_that_is_not_a_reading_is_an_error_and_changes_nothing() {
    mock::set_env("WINDOW", "2");
    invoke(&reading("t1", 1.0)).unwrap();
    let err = invoke("{\"sensor\":\"t1\"}").unwrap_err();
    assert!(err.starts_with("payload is not a reading: "), "{err}");
    assert_eq!(
        invoke(&reading("t1", 3.0)),
        Ok(r#"{"sensor":"t1","average":2.0,"count":2}"#.into())
    );
}
