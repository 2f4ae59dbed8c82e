//! Spooled records → upstream MQTT messages.
//!
//! - An event goes out alone, payload unchanged, on its own topic.
//! - A dead letter goes out alone, as JSON, on `<prefix>/dlq/<function>`.
//! - Log lines and metric snapshots go out batched: one JSON document per
//!   run of consecutive records of the same kind, up to `MAX_BATCH`
//!   records or `MAX_BATCH_BYTES`, on `<prefix>/logs` and `<prefix>/metrics`.
//!
//! Every message carries MQTT 5 user properties `device`, `epoch`, and
//! `seq` (events) or `first_seq`/`last_seq` (batches), so a backend can drop
//! the duplicates a crash between send and confirm produces. JSON batches
//! carry the same fields in the document.

use crate::spool::body::{self, DeadLetterBody, EventBody, LogBody, MetricBody};
use crate::spool::{Kind, Record};

pub const MAX_BATCH: usize = 200;
pub const MAX_BATCH_BYTES: usize = 64 << 10;

/// One message for upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub first_seq: u64,
    pub last_seq: u64,
    pub properties: Vec<(String, String)>,
}

/// Identity stamped on every message.
pub struct Stamp<'a> {
    pub device: &'a str,
    pub epoch: u64,
    pub prefix: &'a str,
}

/// Groups records into messages, in seq order. A record whose body cannot
/// be decoded is sent as a log line saying so, never silently skipped: its
/// seq must still be confirmed for the cursor to move.
pub fn build(records: &[Record], stamp: &Stamp<'_>) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let record = &records[i];
        match record.kind {
            Kind::Event => {
                messages.push(event(record, stamp));
                i += 1;
            }
            Kind::DeadLetter => {
                messages.push(dead_letter(record, stamp));
                i += 1;
            }
            kind => {
                let mut j = i;
                let mut bytes = 0;
                while j < records.len()
                    && records[j].kind == kind
                    && j - i < MAX_BATCH
                    && (j == i || bytes + records[j].body.len() <= MAX_BATCH_BYTES)
                {
                    bytes += records[j].body.len();
                    j += 1;
                }
                messages.push(batch(kind, &records[i..j], stamp));
                i = j;
            }
        }
    }
    messages
}

fn identity(stamp: &Stamp<'_>) -> Vec<(String, String)> {
    vec![
        ("device".to_owned(), stamp.device.to_owned()),
        ("epoch".to_owned(), stamp.epoch.to_string()),
    ]
}

fn event(record: &Record, stamp: &Stamp<'_>) -> Message {
    let mut properties = identity(stamp);
    properties.push(("seq".to_owned(), record.seq.to_string()));
    properties.push(("ts".to_owned(), record.ts_ms.to_string()));
    match body::decode::<EventBody>(&record.body) {
        Ok(EventBody::V1 {
            topic,
            payload,
            origin,
        }) => {
            properties.push(("origin".to_owned(), origin));
            Message {
                topic,
                payload,
                first_seq: record.seq,
                last_seq: record.seq,
                properties,
            }
        }
        Err(e) => undecodable(record, stamp, &e.to_string(), properties),
    }
}

fn dead_letter(record: &Record, stamp: &Stamp<'_>) -> Message {
    let mut properties = identity(stamp);
    properties.push(("seq".to_owned(), record.seq.to_string()));
    properties.push(("ts".to_owned(), record.ts_ms.to_string()));
    match body::decode::<DeadLetterBody>(&record.body) {
        Ok(letter) => {
            let DeadLetterBody::V1 { function, .. } = &letter;
            let topic = format!("{}/dlq/{function}", stamp.prefix);
            let mut document = letter.to_json(Some(stamp.device));
            document["epoch"] = stamp.epoch.into();
            document["seq"] = record.seq.into();
            document["ts"] = record.ts_ms.into();
            Message {
                topic,
                payload: document.to_string().into_bytes(),
                first_seq: record.seq,
                last_seq: record.seq,
                properties,
            }
        }
        Err(e) => undecodable(record, stamp, &e.to_string(), properties),
    }
}

fn undecodable(
    record: &Record,
    stamp: &Stamp<'_>,
    error: &str,
    properties: Vec<(String, String)>,
) -> Message {
    let document = serde_json::json!({
        "device": stamp.device,
        "epoch": stamp.epoch,
        "first_seq": record.seq,
        "last_seq": record.seq,
        "logs": [{
            "seq": record.seq,
            "ts": record.ts_ms,
            "level": "ERROR",
            "source": "ledge::uplink",
            "message": format!("spooled {} record {} could not be decoded: {error}", record.kind.as_str(), record.seq),
        }],
    });
    Message {
        topic: format!("{}/logs", stamp.prefix),
        payload: document.to_string().into_bytes(),
        first_seq: record.seq,
        last_seq: record.seq,
        properties,
    }
}

fn batch(kind: Kind, records: &[Record], stamp: &Stamp<'_>) -> Message {
    let (first_seq, last_seq) = (records[0].seq, records[records.len() - 1].seq);
    let (field, topic) = match kind {
        Kind::Metric => ("metrics", format!("{}/metrics", stamp.prefix)),
        Kind::Log | Kind::Event | Kind::DeadLetter => ("logs", format!("{}/logs", stamp.prefix)),
    };
    let items: Vec<serde_json::Value> = records.iter().map(|r| item(kind, r)).collect();
    let document = serde_json::json!({
        "device": stamp.device,
        "epoch": stamp.epoch,
        "first_seq": first_seq,
        "last_seq": last_seq,
        field: items,
    });
    let mut properties = identity(stamp);
    properties.push(("first_seq".to_owned(), first_seq.to_string()));
    properties.push(("last_seq".to_owned(), last_seq.to_string()));
    Message {
        topic,
        payload: document.to_string().into_bytes(),
        first_seq,
        last_seq,
        properties,
    }
}

fn item(kind: Kind, record: &Record) -> serde_json::Value {
    let decoded = match kind {
        Kind::Log => body::decode::<LogBody>(&record.body).map(
            |LogBody::V1 {
                 level,
                 source,
                 version,
                 request_id,
                 message,
             }| {
                serde_json::json!({
                    "seq": record.seq,
                    "ts": record.ts_ms,
                    "level": level_name(level),
                    "source": source,
                    "version": version,
                    "request_id": request_id,
                    "message": message,
                })
            },
        ),
        _ => body::decode::<MetricBody>(&record.body).map(|MetricBody::V1 { json }| {
            let snapshot = serde_json::from_str(&json).unwrap_or(serde_json::Value::String(json));
            serde_json::json!({ "seq": record.seq, "ts": record.ts_ms, "snapshot": snapshot })
        }),
    };
    decoded.unwrap_or_else(|e| {
        serde_json::json!({
            "seq": record.seq,
            "ts": record.ts_ms,
            "error": format!("record could not be decoded: {e}"),
        })
    })
}

fn level_name(level: u8) -> &'static str {
    match level {
        1 => "ERROR",
        2 => "WARN",
        3 => "INFO",
        4 => "DEBUG",
        _ => "TRACE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, kind: Kind, body: Vec<u8>) -> Record {
        Record {
            seq,
            ts_ms: 1000 + seq,
            kind,
            body,
        }
    }

    fn log(seq: u64) -> Record {
        record(
            seq,
            Kind::Log,
            body::encode(&LogBody::V1 {
                level: 3,
                source: "fn:f".into(),
                version: "$LATEST".into(),
                request_id: format!("r{seq}"),
                message: format!("line {seq}"),
            }),
        )
    }

    fn event(seq: u64) -> Record {
        record(
            seq,
            Kind::Event,
            body::encode(&EventBody::V1 {
                topic: "up/events/x".into(),
                payload: vec![0xff, seq as u8],
                origin: "bridge".into(),
            }),
        )
    }

    const STAMP: Stamp<'static> = Stamp {
        device: "gw1",
        epoch: 77,
        prefix: "ledge/gw1",
    };

    #[test]
    fn events_go_alone_with_their_payload_untouched() {
        let messages = build(&[event(4)], &STAMP);
        assert_eq!(messages.len(), 1);
        let m = &messages[0];
        assert_eq!(
            (m.topic.as_str(), m.payload.as_slice()),
            ("up/events/x", &[0xff, 4][..])
        );
        assert!(m.properties.contains(&("seq".into(), "4".into())));
        assert!(m.properties.contains(&("device".into(), "gw1".into())));
        assert!(m.properties.contains(&("epoch".into(), "77".into())));
    }

    #[test]
    fn consecutive_logs_are_batched_and_events_break_the_batch() {
        let records = vec![log(1), log(2), event(3), log(4)];
        let messages = build(&records, &STAMP);
        let spans: Vec<(u64, u64)> = messages.iter().map(|m| (m.first_seq, m.last_seq)).collect();
        assert_eq!(spans, vec![(1, 2), (3, 3), (4, 4)]);
        let doc: serde_json::Value = serde_json::from_slice(&messages[0].payload).unwrap();
        assert_eq!(messages[0].topic, "ledge/gw1/logs");
        assert_eq!(doc["device"], "gw1");
        assert_eq!(doc["logs"][1]["message"], "line 2");
        assert_eq!(doc["logs"][1]["request_id"], "r2");
        assert_eq!(doc["logs"][0]["level"], "INFO");
    }

    #[test]
    fn batches_are_bounded_in_records() {
        let records: Vec<Record> = (1..=450).map(log).collect();
        let messages = build(&records, &STAMP);
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[2].last_seq, 450);
    }

    #[test]
    fn an_undecodable_event_is_reported_not_skipped() {
        let messages = build(&[record(9, Kind::Event, vec![0xee; 3])], &STAMP);
        assert_eq!(messages[0].last_seq, 9);
        assert!(String::from_utf8_lossy(&messages[0].payload).contains("could not be decoded"));
    }
}
