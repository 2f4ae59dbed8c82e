//! Replays recorded readings from a file, for demos and tests.
//!
//! CSV: a header row with a `value` column (other columns are ignored).
//! JSONL (`.jsonl`/`.ndjson`): one object per line with a numeric `value`.
//! Blank lines and lines starting with `#` are skipped. The file is read once,
//! at start; a bad line is an error naming `file:line`.

use std::path::Path;

use super::{Sample, Sensor, SensorError};

pub struct ReplaySensor {
    values: Vec<f64>,
    next: usize,
    looped: bool,
}

impl ReplaySensor {
    pub fn open(path: &Path, looped: bool) -> Result<Self, SensorError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SensorError::Unavailable(format!("cannot read {}: {e}", path.display()))
        })?;
        let jsonl = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("jsonl" | "ndjson")
        );
        let values = if jsonl {
            parse_jsonl(path, &text)?
        } else {
            parse_csv(path, &text)?
        };
        if values.is_empty() {
            return Err(SensorError::Garbage(format!(
                "{} holds no readings",
                path.display()
            )));
        }
        Ok(Self {
            values,
            next: 0,
            looped,
        })
    }
}

impl Sensor for ReplaySensor {
    fn sample(&mut self) -> Result<Sample, SensorError> {
        if self.next == self.values.len() {
            if !self.looped {
                return Err(SensorError::Finished);
            }
            self.next = 0;
        }
        let value = self.values[self.next];
        self.next += 1;
        Ok(Sample { value })
    }
}

fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<f64>, SensorError> {
    let mut lines = data_lines(text);
    let Some((header_line, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let column = header
        .split(',')
        .position(|name| name.trim() == "value")
        .ok_or_else(|| {
            SensorError::Garbage(format!(
                "{}:{header_line}: the header has no `value` column",
                path.display()
            ))
        })?;
    lines
        .map(|(n, line)| {
            line.split(',')
                .nth(column)
                .and_then(|cell| cell.trim().parse::<f64>().ok())
                .ok_or_else(|| {
                    SensorError::Garbage(format!("{}:{n}: no numeric `value`", path.display()))
                })
        })
        .collect()
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<f64>, SensorError> {
    data_lines(text)
        .map(|(n, line)| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("value").and_then(serde_json::Value::as_f64))
                .ok_or_else(|| {
                    SensorError::Garbage(format!(
                        "{}:{n}: not a JSON object with a numeric `value`",
                        path.display()
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn csv_replays_the_value_column_in_a_loop() {
        let (_dir, path) = write("r.csv", "time,value\n# comment\n1,20.5\n2,31\n");
        let mut sensor = ReplaySensor::open(&path, true).unwrap();
        let values: Vec<f64> = (0..3).map(|_| sensor.sample().unwrap().value).collect();
        assert_eq!(values, vec![20.5, 31.0, 20.5]);
    }

    #[test]
    fn jsonl_without_loop_finishes() {
        let (_dir, path) = write("r.jsonl", "{\"value\": 1}\n{\"value\": 2.5}\n");
        let mut sensor = ReplaySensor::open(&path, false).unwrap();
        assert_eq!(sensor.sample().unwrap().value, 1.0);
        assert_eq!(sensor.sample().unwrap().value, 2.5);
        assert_eq!(sensor.sample(), Err(SensorError::Finished));
    }

    #[test]
    fn a_bad_line_is_reported_with_its_line_number() {
        let (_dir, path) = write("r.csv", "value\n1\noops\n");
        let err = ReplaySensor::open(&path, true).err().unwrap().to_string();
        assert!(err.ends_with("r.csv:3: no numeric `value`"), "{err}");
        let (_dir, path) = write("r.csv", "temp\n1\n");
        let err = ReplaySensor::open(&path, true).err().unwrap().to_string();
        assert!(
            err.contains(":1: the header has no `value` column"),
            "{err}"
        );
    }
}
