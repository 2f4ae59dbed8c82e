//! Starting a node: every part in the order the data flows, each handed only
//! what it needs.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::pipeline::{load_functions, subscriptions, OnBadModule, Pipeline};
use super::{Node, NodeError, ReloadError};
use crate::config::{BrokerMode, Plan};
use crate::deploy::probation::{self, Reporter};
use crate::deploy::store::Store;
use crate::dispatch::Routing;
use crate::hw::gpio::GpioLines;
use crate::lifecycle::Reloads;
use crate::mqtt::link::{Link, LinkParts};
use crate::mqtt::LinkState;
use crate::runtime::Runtime;
use crate::sinks::local::{LocalPublisher, Outboxes};
use crate::sinks::spool::SpoolSink;
use crate::sinks::{DeadLetterSink, ForwardSink, LogSink, PublishSink, Sinks};
use crate::sources::mqtt::MqttSource;
use crate::spool::Spool;
use crate::telemetry::StatusSources;
use crate::uplink::{Subscriptions, Uplink, UplinkStatus};

impl Node {
    pub(super) async fn start(mut plan: Plan, reloads: Reloads) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&plan.device.data_dir).map_err(|source| NodeError::DataDir {
            path: plan.device.data_dir.clone(),
            source,
        })?;
        // Lowered worker threads may leave SCHED_IDLE only under this
        // limit (or CAP_SYS_NICE): see runtime::priority.
        match crate::runtime::priority::raise_nice_limit() {
            Ok(limit) => log::debug!(target: "ledge::invoke", "RLIMIT_NICE soft limit {limit}"),
            Err(e) => log::debug!(target: "ledge::invoke", "{e}"),
        }
        let store = Store::under(&plan.device.data_dir);
        let config_plan = plan.clone();
        probation::apply_store(&mut plan, &store)?;
        {
            // Modules a crash left behind between storing and recording.
            let lock = store.lock()?;
            let removed = store.collect_garbage(&lock, &[])?;
            if removed > 0 {
                log::info!(target: "ledge::deploy", "function store: removed {removed} unreferenced modules");
            }
        }
        // What a reload compares against; unreadable only if the file went
        // away since it was parsed, and then every later reload fails anyway.
        let config_text = crate::config::read_text(&plan.source).unwrap_or_default();
        let runtime = Runtime::new(plan.broker.max_payload)
            .map_err(|e| NodeError::Runtime(e.to_string()))?
            .with_device_id(&plan.device.id);

        // Uplink spools and the sink that writes them.
        let (spool, telemetry) = open_uplink_spools(&plan)?.unzip();
        let spool_sink = match (&spool, &telemetry, &plan.upstream) {
            (Some(spool), Some(telemetry), Some(upstream)) => Some(Arc::new(SpoolSink::new(
                Arc::clone(spool),
                Arc::clone(telemetry),
                &upstream.topic_prefix,
                upstream.ship_logs,
            ))),
            _ => None,
        };
        if let (Some(sink), Some(upstream)) = (&spool_sink, &plan.upstream) {
            if upstream.ship_logs.is_some() {
                crate::telemetry::ship_own_logs(Arc::clone(sink));
            }
        }
        let reporter = Reporter::new(
            &plan.device.id,
            spool_sink.as_ref(),
            plan.upstream.as_ref().map(|u| u.topic_prefix.as_str()),
        );

        // Sinks. Outputs go to their safe state before any function can run.
        let link_state = Arc::new(LinkState::default());
        let outboxes = Outboxes::new(Arc::clone(&link_state));
        let publisher: Arc<dyn PublishSink> = Arc::new(LocalPublisher::new(&outboxes));
        let gpio = Arc::new(GpioLines::open(&plan.gpio.backend, &plan.gpio.outputs));
        let sinks = Sinks {
            gpio: Some(gpio),
            publish: Arc::clone(&publisher),
            forward: spool_sink.clone().map(|s| s as Arc<dyn ForwardSink>),
            logs: spool_sink.clone().map(|s| s as Arc<dyn LogSink>),
            dead_letters: spool_sink.clone().map(|s| s as Arc<dyn DeadLetterSink>),
        };

        // Modules, then the pipeline that runs them.
        reporter.report_cli_moves(&store);
        let functions = load_functions(
            &runtime,
            &mut plan,
            &store,
            &reporter,
            OnBadModule::Disable,
            || {
                let mut plan = config_plan.clone();
                probation::apply_store(&mut plan, &store)?;
                Ok(plan)
            },
        )
        .map_err(NodeError::from)?;
        let room = Arc::new(tokio::sync::Notify::new());
        let mut streams = HashMap::new();
        let pipeline = Pipeline::start(
            &plan,
            &functions,
            &sinks,
            &publisher,
            &mut streams,
            None,
            &room,
        )
        .map_err(NodeError::from)?;
        let routing = Routing::new(Arc::clone(&pipeline.dispatcher));

        // Uplink, with the deployment receiver behind it.
        let (stop_links, links_stopped) = watch::channel(false);
        let uplink_status = plan
            .upstream
            .as_ref()
            .map(|_| Arc::new(UplinkStatus::default()));
        let config_functions = Arc::new(std::sync::RwLock::new(probation::latest_specs(&plan)));
        let uplink = match (&spool, &plan.upstream, &uplink_status) {
            (Some(spool), Some(upstream), Some(status)) => {
                let subscriptions = if plan.deploy.trusted_keys.is_empty() {
                    log::info!(target: "ledge::deploy", "over-the-air deployments off: no [deploy] trusted_keys");
                    None
                } else {
                    let (messages, received) = std::sync::mpsc::channel();
                    let reports = reporter.clone();
                    let receiver = crate::deploy::ota::Receiver {
                        prefix: upstream.topic_prefix.clone(),
                        store: store.clone(),
                        rules: plan.deploy.clone(),
                        functions: Arc::clone(&config_functions),
                        runtime: runtime.clone(),
                        reloads: reloads.clone(),
                        report: Box::new(move |report| reports.report(report)),
                    };
                    let filters = receiver.filters();
                    std::thread::Builder::new()
                        .name("ledge-deploy".to_owned())
                        .spawn(move || receiver.run(received))
                        .map_err(NodeError::Threads)?;
                    log::info!(target: "ledge::deploy", "over-the-air deployments on {}/deploy ({} trusted keys)", upstream.topic_prefix, plan.deploy.trusted_keys.len());
                    Some(Subscriptions {
                        purpose: "deployments".to_owned(),
                        filters,
                        deliver: messages,
                    })
                };
                let uplink = Uplink {
                    plan: upstream.clone(),
                    device: plan.device.id.clone(),
                    spool: Arc::clone(spool),
                    telemetry: telemetry.clone(),
                    status: Arc::clone(status),
                    subscriptions,
                };
                Some(tokio::spawn(uplink.run(links_stopped.clone())))
            }
            _ => None,
        };

        // The link to the local broker (embedded or external).
        let mut mqtt = MqttSource::new(plan.broker.max_payload);
        mqtt.forwards = plan.forwards.clone();
        mqtt.spool = spool_sink.clone();
        // Synchronous invokes: the link to an external broker (MQTT 5)
        // serves both MQTT 5 requests and envelopes itself; the embedded
        // broker speaks 3.1.1 only, so there ledge's local side takes
        // envelopes and replies through the local publisher.
        if matches!(plan.broker.mode, BrokerMode::Embedded { .. }) {
            mqtt.invoke_prefix = format!("ledge/{}/invoke/", plan.device.id);
            mqtt.replies = Some(Arc::downgrade(&publisher));
        }
        let (filters, filters_wanted) = watch::channel(subscriptions(&pipeline.dispatcher, &plan));
        let link = Link::start(LinkParts {
            plan: &plan,
            source: mqtt,
            routing: &routing,
            outboxes: &outboxes,
            state: &link_state,
            room: &room,
            filters: filters_wanted,
            stop: links_stopped,
        })
        .await?;

        // Services: status, metrics, the control socket.
        let status = Arc::new(StatusSources {
            device: plan.device.id.clone(),
            started: std::time::Instant::now(),
            routing: routing.clone(),
            link: Arc::clone(&link_state),
            spool: spool.clone(),
            telemetry: telemetry.clone(),
            uplink: uplink_status,
            #[cfg(feature = "local-broker")]
            broker: link.broker.clone(),
            memory: Default::default(),
        });
        let (stop_services, services_stopped) = watch::channel(false);
        let services = start_services(
            &plan,
            &status,
            telemetry.as_ref(),
            &reloads,
            &services_stopped,
        )
        .await?;

        for warning in crate::config::lint::warnings(&plan) {
            log::warn!(target: "ledge::node", "{warning}");
        }
        let enabled = functions.iter().filter(|f| f.is_some()).count();
        log::info!(
            target: "ledge::node",
            "ledge {} running as `{}`: {enabled} of {} functions enabled, {} routes, {} sensors; broker {}{}",
            env!("CARGO_PKG_VERSION"),
            plan.device.id,
            plan.functions.len(),
            plan.routes.len(),
            plan.sensors.len(),
            plan.broker.mode,
            plan.upstream.as_ref().map(|u| format!("; upstream {}:{}", u.host, u.port)).unwrap_or_default()
        );
        let mut node = Self {
            plan,
            config_text,
            runtime,
            routing,
            pipeline,
            sinks,
            streams,
            filters,
            stop_services,
            services,
            publisher,
            outboxes,
            pump: link.pump,
            stop_links,
            link: link.task,
            link_state,
            #[cfg(feature = "local-broker")]
            broker: link.broker,
            room,
            uplink,
            spool,
            telemetry,
            store,
            watches: Vec::new(),
            reporter,
            config_functions,
            status,
        };
        node.refresh_watches();
        Ok(node)
    }
}

impl From<ReloadError> for NodeError {
    /// Start shares module loading and pipeline building with reload.
    fn from(e: ReloadError) -> Self {
        match e {
            ReloadError::Spool(e) => NodeError::Spool(e),
            ReloadError::Threads(e) => NodeError::Threads(e),
            ReloadError::Store(e) => NodeError::Store(e),
            other => NodeError::Runtime(other.to_string()),
        }
    }
}

/// The HTTP servers to start, each with whether it serves the API (the
/// config's routes and Lambda's) or only `/metrics` and `/healthz`:
/// `[http]`, and `[metrics] listen` when it names another address (with
/// `[http]`'s credentials guarding it).
fn http_servers(plan: &Plan) -> Vec<(crate::config::http::HttpPlan, bool)> {
    let mut servers: Vec<_> = plan.http.iter().map(|h| (h.clone(), true)).collect();
    if let Some(address) = plan.metrics_listen {
        if plan.http.as_ref().map(|h| h.listen) != Some(address) {
            let mut metrics = crate::config::http::HttpPlan::plain(address);
            if let Some(http) = &plan.http {
                metrics.api_keys.clone_from(&http.api_keys);
                metrics.credentials.clone_from(&http.credentials);
            }
            servers.push((metrics, false));
        }
    }
    servers
}

/// Metrics shipping, the HTTP servers (with the Prometheus endpoint) and
/// the control socket. An HTTP server that cannot listen is a start-up
/// error, as a taken broker port is: clients were promised that address.
/// A control socket that cannot be made is logged and left out.
async fn start_services(
    plan: &Plan,
    status: &Arc<StatusSources>,
    telemetry: Option<&Arc<Spool>>,
    reloads: &Reloads,
    stopped: &watch::Receiver<bool>,
) -> Result<JoinSet<()>, NodeError> {
    let mut services = JoinSet::new();
    if let Some(telemetry) = telemetry {
        services.spawn(crate::telemetry::ship_metrics(
            Arc::clone(status),
            Arc::clone(telemetry),
            plan.metrics_interval,
            stopped.clone(),
        ));
    }
    for (server, api) in http_servers(plan) {
        let stats = Arc::new(crate::http::Stats::default());
        let routing = status.routing.clone();
        let listen = server.listen;
        let server = crate::http::Server::bind(server, api, routing, Arc::clone(status), stats)
            .await
            .map_err(NodeError::Http)?;
        let scheme = if server.is_https() { "https" } else { "http" };
        let address = server.local_addr().unwrap_or(listen);
        if api {
            log::info!(target: "ledge::http", "HTTP routes, Lambda's API, /metrics and /healthz on {scheme}://{address}");
        } else {
            log::info!(target: "ledge::metrics", "Prometheus metrics on {scheme}://{address}/metrics");
        }
        services.spawn(server.run(stopped.clone()));
    }
    let socket = crate::control::socket_path(&plan.device.data_dir);
    match crate::control::bind(&socket) {
        Ok(listener) => {
            services.spawn(crate::control::serve(
                listener,
                Arc::clone(status),
                reloads.clone(),
                stopped.clone(),
            ));
        }
        Err(e) => {
            log::warn!(target: "ledge::control", "no control socket at {}: {e}; `ledge status` will not reach this ledge", socket.display())
        }
    }
    Ok(services)
}

/// The uplink's event stream and its telemetry stream (logs, metrics).
type UplinkSpools = (Arc<Spool>, Arc<Spool>);

fn open_uplink_spools(plan: &Plan) -> Result<Option<UplinkSpools>, NodeError> {
    if plan.upstream.is_none() {
        return Ok(None);
    }
    let (events, telemetry) = plan.spool.split_for_telemetry();
    let open = |stream: &str, options: crate::spool::SpoolOptions| {
        let dir = crate::spool::stream_dir(&plan.device.data_dir, stream);
        let spool = Spool::open(&dir, options.clone())?;
        log::info!(
            target: "ledge::spool",
            "spool {} open: {} segments, {} bytes of {}, next seq {}, fsync {}",
            dir.display(),
            spool.segment_count(),
            spool.disk_bytes(),
            options.max_bytes,
            spool.seq_range().1,
            options.fsync
        );
        Ok::<_, NodeError>(Arc::new(spool))
    };
    Ok(Some((
        open("uplink", events)?,
        open(crate::spool::TELEMETRY_STREAM, telemetry)?,
    )))
}
