//! Over-the-air deployments: documents and chunks arriving on the upstream
//! link become published versions, after every check passes.
//!
//! One thread owns all of it (file work and wasm validation block). For
//! each accepted document an upload directory holds the envelope and each
//! chunk as its own file, so an upload resumes after a disconnect or a
//! restart: chunks already on flash are not needed again, and the
//! `receiving` report names the missing ones. When the last chunk lands the
//! module is assembled, its size, sha256 and wasm validity are checked, and
//! only then is it published (and the alias moved, on probation). Any
//! failure removes the upload and leaves the serving version alone.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::config::{DeployPlan, FunctionSpec};
use crate::lifecycle::{ReloadRequest, Reloads};
use crate::runtime::Runtime;
use crate::uplink::Incoming;

use super::document::{self, Deployment};
use super::store::{AliasTarget, Probation, Store, Version};

/// Missing chunk indexes a `receiving` report lists (the first ones;
/// `missing_count` has them all).
const MAX_MISSING_LISTED: usize = 256;
/// A rejection reason is cut here: it may quote what the document said.
const MAX_REASON: usize = 512;

/// Where reports go (the node hands in `probation::Reporter::report`).
pub type Report = Box<dyn Fn(serde_json::Value) + Send>;

pub struct Receiver {
    pub prefix: String,
    pub store: Store,
    pub rules: DeployPlan,
    /// The config's functions (`$LATEST` specs), kept current by reloads.
    pub functions: Arc<RwLock<Vec<FunctionSpec>>>,
    pub runtime: Runtime,
    pub reloads: Reloads,
    pub report: Report,
}

/// An upload in progress.
struct Upload {
    deployment: Deployment,
    dir: PathBuf,
    have: BTreeSet<u64>,
}

/// Why an upload was abandoned: a reason for the report.
struct Abandon(String);

impl Receiver {
    /// The upstream topics deployments arrive on, for the uplink to
    /// subscribe to: the document first (a broker delivers retained
    /// messages per subscription in order, so its chunks come after it).
    pub fn filters(&self) -> Vec<String> {
        let prefix = &self.prefix;
        vec![
            format!("{prefix}/deploy"),
            format!("{prefix}/deploy/chunk/#"),
        ]
    }

    /// Handles what the uplink delivers on `filters()` until the sender
    /// side closes.
    pub fn run(self, messages: std::sync::mpsc::Receiver<Incoming>) {
        let mut uploads = self.resume_uploads();
        let document_topic = format!("{}/deploy", self.prefix);
        let chunk_prefix = format!("{}/deploy/chunk/", self.prefix);
        for message in messages {
            if message.topic == document_topic {
                self.document(&message.payload, &mut uploads);
            } else if let Some(rest) = message.topic.strip_prefix(&chunk_prefix) {
                self.chunk(rest, &message.payload, &mut uploads);
            }
        }
    }

    /// Uploads a previous run left unfinished.
    fn resume_uploads(&self) -> HashMap<String, Upload> {
        let mut uploads = HashMap::new();
        let Ok(entries) = std::fs::read_dir(self.store.uploads_dir()) else {
            return uploads;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let envelope = std::fs::read(dir.join("envelope.json"));
            let deployment = envelope.ok().and_then(|payload| {
                document::verify(
                    &payload,
                    &self.rules.trusted_keys,
                    self.rules.max_module_size as u64,
                )
                .ok()
            });
            match deployment {
                Some(deployment) if self.is_newer(&deployment) => {
                    let have = chunks_on_disk(&dir, &deployment);
                    log::info!(target: "ledge::deploy", "resuming the upload of {}:{} ({} of {} chunks on flash)", deployment.function, deployment.version, have.len(), deployment.chunks());
                    let upload = Upload {
                        deployment,
                        dir,
                        have,
                    };
                    uploads.insert(upload.deployment.function.clone(), upload);
                }
                _ => {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        for function in uploads.keys().cloned().collect::<Vec<_>>() {
            self.finish_if_complete(&function, &mut uploads);
        }
        uploads
    }

    fn is_newer(&self, deployment: &Deployment) -> bool {
        self.store
            .state(&deployment.function)
            .is_ok_and(|state| deployment.version > state.highest)
    }

    fn reject(&self, deployment: Option<&Deployment>, reason: &str) {
        let reason = document::short(reason, MAX_REASON);
        let mut report = serde_json::json!({ "event": "rejected", "reason": reason });
        if let (Some(d), Some(object)) = (deployment, report.as_object_mut()) {
            object.insert("function".to_owned(), d.function.clone().into());
            object.insert("version".to_owned(), d.version.into());
        }
        (self.report)(report);
    }

    fn document(&self, payload: &[u8], uploads: &mut HashMap<String, Upload>) {
        let deployment = match document::verify(
            payload,
            &self.rules.trusted_keys,
            self.rules.max_module_size as u64,
        ) {
            Ok(deployment) => deployment,
            Err(e) => return self.reject(None, &e.to_string()),
        };
        let known = self
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|f| f.name == deployment.function);
        if !known {
            return self.reject(
                Some(&deployment),
                &format!(
                    "no function `{}` in this device's config: a deployment can only update a configured function",
                    deployment.function
                ),
            );
        }
        let state = match self.store.state(&deployment.function) {
            Ok(state) => state,
            Err(e) => return self.reject(Some(&deployment), &e.to_string()),
        };
        if let Some(published) = state.versions.get(&deployment.version) {
            if published.sha256 == deployment.sha256 {
                // The same deployment again (a retained document after a
                // reconnect): nothing to do.
                log::debug!(target: "ledge::deploy", "{}:{} is already published", deployment.function, deployment.version);
                return;
            }
        }
        if deployment.version <= state.highest {
            return self.reject(
                Some(&deployment),
                &format!(
                    "version {} is not newer than {}, the highest published: a replayed or downgrading deployment is refused (publish it as a new version)",
                    deployment.version, state.highest
                ),
            );
        }
        if let Some(current) = uploads.get(&deployment.function) {
            if current.deployment == deployment {
                self.report_progress(current);
                return;
            }
            // A newer document replaces an unfinished upload.
            let _ = std::fs::remove_dir_all(&current.dir);
        }
        let dir = self
            .store
            .uploads_dir()
            .join(format!("{}-{}", deployment.function, deployment.version));
        let started = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("envelope.json"), payload));
        if let Err(e) = started {
            let _ = std::fs::remove_dir_all(&dir);
            return self.reject(
                Some(&deployment),
                &format!("cannot start the upload in {}: {e}", dir.display()),
            );
        }
        let have = chunks_on_disk(&dir, &deployment);
        let upload = Upload {
            deployment,
            dir,
            have,
        };
        self.report_progress(&upload);
        let function = upload.deployment.function.clone();
        uploads.insert(function.clone(), upload);
        self.finish_if_complete(&function, uploads);
    }

    fn report_progress(&self, upload: &Upload) {
        let d = &upload.deployment;
        let missing: Vec<u64> = (0..d.chunks())
            .filter(|i| !upload.have.contains(i))
            .take(MAX_MISSING_LISTED)
            .collect();
        let missing_count = d.chunks() - upload.have.len() as u64;
        (self.report)(serde_json::json!({
            "event": "receiving",
            "function": d.function,
            "version": d.version,
            "chunks": d.chunks(),
            "missing": missing,
            "missing_count": missing_count,
        }));
    }

    /// `rest` is `<function>/<version>/<index>`.
    fn chunk(&self, rest: &str, payload: &[u8], uploads: &mut HashMap<String, Upload>) {
        let mut parts = rest.split('/');
        let (Some(function), Some(version), Some(index), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            log::warn!(target: "ledge::deploy", "ignoring a chunk on an unexpected topic …/deploy/chunk/{rest}");
            return;
        };
        let (Ok(version), Ok(index)) = (version.parse::<u32>(), index.parse::<u64>()) else {
            log::warn!(target: "ledge::deploy", "ignoring a chunk on …/deploy/chunk/{rest}: version and index must be numbers");
            return;
        };
        let Some(upload) = uploads.get_mut(function) else {
            log::debug!(target: "ledge::deploy", "ignoring chunk {index} of {function}:{version}: no deployment document for it");
            return;
        };
        let d = &upload.deployment;
        if d.version != version {
            log::debug!(target: "ledge::deploy", "ignoring chunk {index} of {function}:{version}: the upload in progress is version {}", d.version);
            return;
        }
        if index >= d.chunks() {
            log::warn!(target: "ledge::deploy", "{function}:{version}: chunk {index} is out of range (the module has {} chunks); ignored", d.chunks());
            return;
        }
        if payload.len() as u64 != d.chunk_len(index) {
            log::warn!(target: "ledge::deploy", "{function}:{version}: chunk {index} has {} bytes, expected {}; ignored (truncated or corrupt)", payload.len(), d.chunk_len(index));
            return;
        }
        if upload.have.contains(&index) {
            return;
        }
        let path = chunk_path(&upload.dir, index);
        if let Err(e) = crate::fs::write_atomic(&path, payload) {
            let deployment = upload.deployment.clone();
            let _ = std::fs::remove_dir_all(&upload.dir);
            uploads.remove(function);
            return self.reject(
                Some(&deployment),
                &format!(
                    "cannot store chunk {index} ({e}); upload abandoned, partial files removed"
                ),
            );
        }
        upload.have.insert(index);
        self.finish_if_complete(function, uploads);
    }

    fn finish_if_complete(&self, function: &str, uploads: &mut HashMap<String, Upload>) {
        let complete = uploads
            .get(function)
            .is_some_and(|u| u.have.len() as u64 == u.deployment.chunks());
        if !complete {
            return;
        }
        let Some(upload) = uploads.remove(function) else {
            return;
        };
        let outcome = self.install(&upload);
        let _ = std::fs::remove_dir_all(&upload.dir);
        let d = &upload.deployment;
        match outcome {
            Ok(previous) => {
                (self.report)(serde_json::json!({
                    "event": "deployed",
                    "function": d.function,
                    "version": d.version,
                    "sha256": d.sha256,
                    "alias": d.alias,
                    "previous": previous.map(|p| p.to_string()),
                    "moved_by": "ota",
                }));
                let _ = self.reloads.send(ReloadRequest {
                    why: format!("deployment of {}:{}", d.function, d.version),
                    reply: None,
                });
            }
            Err(Abandon(reason)) => self.reject(Some(d), &reason),
        }
    }

    /// Assembles, checks and publishes a complete upload; returns the
    /// alias's previous target.
    fn install(&self, upload: &Upload) -> Result<Option<AliasTarget>, Abandon> {
        let d = &upload.deployment;
        let module = upload.dir.join("module.wasm");
        assemble(&upload.dir, d, &module)
            .map_err(|e| Abandon(format!("cannot assemble the module: {e}")))?;
        let bytes = std::fs::read(&module).map_err(|e| Abandon(e.to_string()))?;
        if bytes.len() as u64 != d.size {
            return Err(Abandon(format!(
                "size mismatch: {} bytes arrived, the deployment says {}",
                bytes.len(),
                d.size
            )));
        }
        let sha256 = super::store::sha256_hex(&bytes);
        if !sha256.eq_ignore_ascii_case(&d.sha256) {
            return Err(Abandon(format!(
                "hash mismatch: the module's sha256 is {sha256}, the deployment says {}",
                d.sha256
            )));
        }
        let spec = self
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|f| f.name == d.function)
            .cloned()
            .ok_or_else(|| Abandon(format!("function `{}` left the config", d.function)))?;
        let mut candidate = spec;
        candidate.module_path = module.clone();
        candidate.version = d.version.to_string();
        if let Some(memory) = d.settings.memory_bytes {
            candidate.memory_limit = memory as usize;
        }
        self.runtime
            .load(candidate.clone())
            .map_err(|e| Abandon(format!("the module does not load: {}", e.reason)))?;
        let lock = self.store.lock().map_err(|e| Abandon(e.to_string()))?;
        self.store
            .adopt_module(&lock, &module, &sha256)
            .map_err(|e| Abandon(e.to_string()))?;
        let version = Version {
            sha256,
            size: d.size,
            settings: snapshot(&candidate, &d.settings),
            published_at_ms: super::store::now_ms(),
            origin: "ota".to_owned(),
        };
        self.store
            .publish(&lock, &d.function, Some(d.version), version)
            .map_err(|e| Abandon(e.to_string()))?;
        let Some(alias) = &d.alias else {
            return Ok(None);
        };
        self.store
            .set_alias(
                &lock,
                &d.function,
                alias,
                AliasTarget::single(d.version),
                Some(Probation {
                    since_ms: super::store::now_ms(),
                    origin: "ota".to_owned(),
                }),
            )
            .map_err(|e| Abandon(e.to_string()))
    }
}

/// The settings a version pins: the deployment's, with the config's
/// permissions at the time.
pub fn snapshot(spec: &FunctionSpec, requested: &super::store::Settings) -> super::store::Settings {
    let mut settings = requested.clone();
    settings.memory_bytes = Some(settings.memory_bytes.unwrap_or(spec.memory_limit as u64));
    settings.timeout_ms = Some(
        settings
            .timeout_ms
            .unwrap_or(spec.timeout.as_millis() as u64),
    );
    let filters = |list: &[crate::topic::TopicFilter]| {
        Some(list.iter().map(|f| f.as_str().to_owned()).collect())
    };
    settings.allow_publish = filters(&spec.allow_publish);
    settings.allow_forward = filters(&spec.allow_forward);
    settings
}

fn chunk_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index}.chunk"))
}

fn chunks_on_disk(dir: &Path, deployment: &Deployment) -> BTreeSet<u64> {
    (0..deployment.chunks())
        .filter(|i| {
            std::fs::metadata(chunk_path(dir, *i))
                .is_ok_and(|m| m.len() == deployment.chunk_len(*i))
        })
        .collect()
}

fn assemble(dir: &Path, d: &Deployment, module: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::fs::File::create(module)?;
    for index in 0..d.chunks() {
        out.write_all(&std::fs::read(chunk_path(dir, index))?)?;
    }
    out.sync_all()
}
