use super::*;

fn parse(payload: &str, source: &str, subject: &str) -> Result<Reading, ReadingError> {
    Reading::parse(payload.as_bytes(), &Source::from(source), subject)
}

#[test]
fn an_object_reading_names_its_own_sensor() {
    let reading = parse(r#"{"value":31.5,"sensor":"t1","unit":"C"}"#, "mqtt", "x/y").unwrap();
    assert_eq!(
        reading,
        Reading {
            sensor: "t1".into(),
            value: 31.5,
            unit: Some("C".into())
        }
    );
}

#[test]
fn a_bare_number_is_a_reading() {
    let reading = parse(" 12 \n", "sensor", "greenhouse").unwrap();
    assert_eq!(
        (reading.sensor.as_str(), reading.value),
        ("greenhouse", 12.0)
    );
}

#[test]
fn an_mqtt_topic_under_sensors_names_the_sensor() {
    assert_eq!(
        sensor_from_subject(&Source::Mqtt, "sensors/t1/temperature"),
        "t1"
    );
    assert_eq!(sensor_from_subject(&Source::Mqtt, "sensors/t2"), "t2");
}

#[test]
fn other_subjects_name_no_sensor() {
    assert_eq!(sensor_from_subject(&Source::Mqtt, "sensors//x"), "unknown");
    assert_eq!(sensor_from_subject(&Source::Mqtt, "room/t1"), "unknown");
    assert_eq!(sensor_from_subject(&Source::Mqtt, "sensors"), "unknown");
    assert_eq!(sensor_from_subject(&Source::Sensor, ""), "unknown");
    assert_eq!(sensor_from_subject(&Source::Invoke, ""), "unknown");
    assert_eq!(
        sensor_from_subject(&Source::Schedule, "every 5m"),
        "unknown"
    );
}

#[test]
fn a_payload_sensor_wins_over_the_topic() {
    let reading = parse(r#"{"value":1,"sensor":"a"}"#, "mqtt", "sensors/b/x").unwrap();
    assert_eq!(reading.sensor, "a");
}

#[test]
fn payloads_without_a_numeric_value_are_not_readings() {
    for payload in [
        "",
        "  ",
        "hot",
        "{}",
        r#"{"value":"31"}"#,
        r#"{"value":null}"#,
        "[1]",
        "{\"value\":1",
    ] {
        let err = parse(payload, "mqtt", "sensors/t1").unwrap_err();
        assert!(
            err.to_string().starts_with("payload is not a reading: "),
            "{payload:?} gave {err}"
        );
    }
    let err = parse("{}", "mqtt", "sensors/t1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "payload is not a reading: missing field `value` at line 1 column 2"
    );
}

#[test]
fn non_utf8_payloads_are_not_readings() {
    let err = Reading::parse(&[0xff, 0xfe], &Source::Mqtt, "sensors/t1").unwrap_err();
    assert!(matches!(err, ReadingError::NotAReading(_)));
}

#[test]
fn sensor_names_that_cannot_be_a_topic_level_are_refused() {
    for name in ["", "a/b", "+", "x#", "tab\there", &"n".repeat(65)] {
        let payload = serde_json::json!({ "value": 1, "sensor": name }).to_string();
        assert_eq!(
            parse(&payload, "invoke", ""),
            Err(ReadingError::BadSensorName(name.to_string())),
        );
    }
    assert!(parse(r#"{"value":1,"sensor":"température-1"}"#, "invoke", "").is_ok());
}
