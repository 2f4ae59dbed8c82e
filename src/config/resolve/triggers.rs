//! `[[trigger]]`: the routing table. Each trigger names a function (and
//! which version of it) and a source: MQTT topics, a schedule (`every`, or
//! `cron` in a time zone), or a sensor; durable and batched triggers go
//! through the function's spool stream.
//!
//! Files read: the TZif file of a cron schedule's `timezone`, from
//! `$TZDIR` or `/usr/share/zoneinfo` (see [`crate::time::tz`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{names, Resolver};
use crate::config::plan::{
    BatchSpec, CatchUp, CronTiming, FunctionSpec, Qualifier, Route, SensorSpec, Timing,
    TriggerSource,
};
use crate::config::raw::RawTrigger;
use crate::time::cron::Cron;
use crate::time::tz::TimeZone;
use crate::topic::TopicFilter;

impl Resolver<'_> {
    pub(super) fn routes(
        &mut self,
        raw: Vec<Spanned<RawTrigger>>,
        functions: &[FunctionSpec],
        sensors: &[SensorSpec],
    ) -> Vec<Route> {
        let mut routes: Vec<Route> = Vec::with_capacity(raw.len());
        let by_name: HashMap<&str, usize> = functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        // The first durable route of each function: its batch is the stream's.
        let mut durable_route: HashMap<usize, usize> = HashMap::new();
        for entry in raw {
            let location = self.locate(entry.span());
            let t = entry.into_inner();
            let (name, qualifier) = match Qualifier::split(t.function.get_ref()) {
                Ok(split) => split,
                Err(e) => {
                    self.fail(t.function.span(), e);
                    (t.function.get_ref().as_str(), Qualifier::Default)
                }
            };
            let function = by_name.get(name).copied();
            if function.is_none() {
                self.fail(
                    t.function.span(),
                    format!(
                        "trigger names unknown function `{name}` (defined: {})",
                        names(functions.iter().map(|f| f.name.as_str()))
                    ),
                );
            }
            let source = self.trigger_source(&t, sensors);
            let batch = self.batch(&t);
            if let (Some(function), Some(source)) = (function, source) {
                let durable = t.durable.unwrap_or(false) || batch.is_some();
                if let Some(other) = durable_route
                    .get(&function)
                    .map(|&i| &routes[i])
                    .filter(|r| r.batch != batch)
                    .filter(|_| batch.is_some() || t.durable == Some(true))
                {
                    self.fail(
                        t.function.span(),
                        format!(
                            "the durable triggers of `{}` share one stream: give them all the same batch_size and batch_window (see {})",
                            t.function.get_ref(),
                            other.location
                        ),
                    );
                }
                if durable {
                    durable_route.entry(function).or_insert(routes.len());
                }
                routes.push(Route {
                    source,
                    function,
                    location,
                    durable,
                    batch,
                    qualifier,
                    canary: None,
                });
            }
        }
        routes
    }

    fn batch(&mut self, t: &RawTrigger) -> Option<BatchSpec> {
        if t.batch_size.is_none() && t.batch_window.is_none() {
            return None;
        }
        if t.durable == Some(false) {
            if let Some(size) = &t.batch_size {
                self.fail(
                    size.span(),
                    "a batched trigger is always durable; remove `durable = false`",
                );
            }
        }
        Some(BatchSpec {
            size: self.positive(&t.batch_size, 10, 10_000),
            window: self.duration(&t.batch_window, Duration::from_secs(1)),
        })
    }

    /// `every`, or `cron` with its `timezone` and `catch_up`.
    fn timing(&mut self, t: &RawTrigger) -> Option<Timing> {
        let cron = match (&t.every, &t.cron) {
            (Some(_), Some(cron)) => {
                self.fail(cron.span(), "a schedule has `every` or `cron`, not both");
                return None;
            }
            (Some(_), None) => {
                for (key, value) in [("timezone", &t.timezone), ("catch_up", &t.catch_up)] {
                    if let Some(value) = value {
                        self.fail(
                            value.span(),
                            format!("`{key}` applies to `cron` schedules, not `every`"),
                        );
                    }
                }
                return Some(Timing::Every(
                    self.duration(&t.every, Duration::from_secs(60)),
                ));
            }
            (None, Some(cron)) => cron,
            (None, None) => {
                self.fail(
                    t.source.span(),
                    "a schedule trigger needs `every` (e.g. \"5m\") or `cron` (e.g. \"*/5 * * * *\")",
                );
                return None;
            }
        };
        let parsed = Cron::parse(cron.get_ref())
            .map_err(|e| self.fail(cron.span(), format!("bad cron expression: {e}")))
            .ok();
        let timezone = t
            .timezone
            .as_ref()
            .map_or("UTC", |tz| tz.get_ref().as_str())
            .to_owned();
        let zoneinfo = std::env::var_os("TZDIR")
            .map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
        let tz = TimeZone::resolve(&timezone, &zoneinfo)
            .map_err(|e| {
                if let Some(value) = &t.timezone {
                    self.fail(value.span(), e);
                }
            })
            .ok();
        let catch_up = match t.catch_up.as_ref().map(|c| c.get_ref().as_str()) {
            None | Some("skip") => CatchUp::Skip,
            Some("once") => CatchUp::Once,
            Some(other) => {
                if let Some(value) = &t.catch_up {
                    self.fail(
                        value.span(),
                        format!("unknown catch_up `{other}` (known: skip, once)"),
                    );
                }
                CatchUp::Skip
            }
        };
        Some(Timing::Cron(Box::new(CronTiming {
            expression: cron.get_ref().trim().to_owned(),
            cron: parsed?,
            timezone,
            tz: tz?,
            catch_up,
        })))
    }

    fn trigger_source(&mut self, t: &RawTrigger, sensors: &[SensorSpec]) -> Option<TriggerSource> {
        let kind = t.source.get_ref().as_str();
        let extra = |field: &Option<Spanned<String>>, name: &str| {
            field.as_ref().map(|f| (f.span(), name.to_owned()))
        };
        let schedule_keys = || {
            extra(&t.every, "every")
                .or(extra(&t.cron, "cron"))
                .or(extra(&t.timezone, "timezone"))
                .or(extra(&t.jitter, "jitter"))
                .or(extra(&t.catch_up, "catch_up"))
        };
        let stray = match kind {
            "mqtt" => schedule_keys().or(extra(&t.sensor, "sensor")),
            "schedule" => extra(&t.topic, "topic").or(extra(&t.sensor, "sensor")),
            "sensor" => extra(&t.topic, "topic").or(schedule_keys()),
            "http" => extra(&t.topic, "topic")
                .or(extra(&t.sensor, "sensor"))
                .or(schedule_keys()),
            _ => None,
        }
        .or_else(|| {
            let http = super::http::stray_keys(t).filter(|_| kind != "http");
            http.map(|(span, key)| (span, key.to_owned()))
        });
        if let Some((span, key)) = stray {
            self.fail(
                span,
                format!("`{key}` does not apply to a `{kind}` trigger"),
            );
        }
        match kind {
            "mqtt" => {
                let Some(topic) = &t.topic else {
                    self.fail(t.source.span(), "an mqtt trigger needs `topic`");
                    return None;
                };
                match TopicFilter::new(topic.get_ref()) {
                    Ok(filter) => Some(TriggerSource::Mqtt { filter }),
                    Err(e) => {
                        self.fail(topic.span(), format!("invalid topic filter: {e}"));
                        None
                    }
                }
            }
            "schedule" => {
                let timing = self.timing(t)?;
                Some(TriggerSource::Schedule {
                    timing,
                    payload: t.payload.clone(),
                    jitter: self.duration(&t.jitter, Duration::ZERO),
                })
            }
            "sensor" => {
                let Some(sensor) = &t.sensor else {
                    self.fail(t.source.span(), "a sensor trigger needs `sensor`");
                    return None;
                };
                if !sensors.iter().any(|s| s.name == *sensor.get_ref()) {
                    self.fail(
                        sensor.span(),
                        format!(
                            "trigger names unknown sensor `{}` (defined: {})",
                            sensor.get_ref(),
                            names(sensors.iter().map(|s| s.name.as_str()))
                        ),
                    );
                    return None;
                }
                Some(TriggerSource::Sensor {
                    sensor: sensor.get_ref().clone(),
                })
            }
            "http" => self.http_trigger(t),
            other => {
                self.fail(
                    t.source.span(),
                    format!(
                        "unknown trigger source `{other}` (known: mqtt, schedule, sensor, http)"
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::plan::{CatchUp, Timing, TriggerSource};
    use crate::config::resolve::{plan, FUNCTION};

    #[test]
    fn a_trigger_naming_an_unknown_function_lists_the_known_ones() {
        let text = format!(
            "{FUNCTION}[[trigger]]\nsource = \"mqtt\"\ntopic = \"a/#\"\nfunction = \"g\"\n"
        );
        let err = plan(&text).unwrap_err();
        assert!(err.starts_with("/cfg/ledge.toml:7:12:"), "{err}");
        assert!(err.contains("unknown function `g` (defined: f)"), "{err}");
    }

    #[test]
    fn one_message_may_trigger_several_functions() {
        let text = format!(
            "{FUNCTION}[[function]]\nname = \"g\"\nmodule = \"g.wasm\"\n\
             [[trigger]]\nsource = \"mqtt\"\ntopic = \"a/+\"\nfunction = \"f\"\n\
             [[trigger]]\nsource = \"mqtt\"\ntopic = \"a/#\"\nfunction = \"g\"\n"
        );
        let plan = plan(&text).unwrap();
        assert_eq!(plan.routes.len(), 2);
        assert_eq!(plan.routes[1].function, 1);
    }

    #[test]
    fn trigger_fields_must_fit_the_source() {
        let text = format!("{FUNCTION}[[trigger]]\nsource = \"schedule\"\ntopic = \"x\"\nevery = \"5m\"\nfunction = \"f\"\n");
        let err = plan(&text).unwrap_err();
        assert!(
            err.contains("`topic` does not apply to a `schedule` trigger"),
            "{err}"
        );
    }

    #[test]
    fn a_schedule_has_every_or_cron_and_cron_only_keys_stay_with_cron() {
        let trigger = |keys: &str| {
            format!("{FUNCTION}[[trigger]]\nsource = \"schedule\"\nfunction = \"f\"\n{keys}\n")
        };
        let err = plan(&trigger("every = \"5m\"\ncron = \"@hourly\"")).unwrap_err();
        assert!(
            err.contains(":8:8: a schedule has `every` or `cron`, not both"),
            "{err}"
        );
        let err = plan(&trigger("every = \"5m\"\ncatch_up = \"once\"")).unwrap_err();
        assert!(
            err.contains("`catch_up` applies to `cron` schedules"),
            "{err}"
        );
        let err = plan(&trigger("")).unwrap_err();
        assert!(err.contains("needs `every`"), "{err}");
        let err = plan(&trigger("cron = \"* * * * *\"\ntimezone = \"+2\"")).unwrap_err();
        assert!(err.contains(":8:12: bad UTC offset `+2`"), "{err}");
        let ok = plan(&trigger(
            "cron = \"*/5 * * * *\"\ntimezone = \"-03:30\"\njitter = \"2s\"\ncatch_up = \"once\"",
        ))
        .unwrap();
        match &ok.routes[0].source {
            TriggerSource::Schedule {
                timing: Timing::Cron(c),
                jitter,
                ..
            } => {
                assert_eq!((c.tz.offset_at(0), c.catch_up), (-12_600, CatchUp::Once));
                assert_eq!(*jitter, Duration::from_secs(2));
                assert_eq!(
                    ok.routes[0].source.to_string(),
                    "schedule cron */5 * * * * (-03:30)"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
