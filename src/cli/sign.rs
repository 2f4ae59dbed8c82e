//! `ledge keygen` and `ledge sign`: the key pair that signs deployments,
//! and a module signed as a deployment document plus its chunks, checked
//! the way a gateway will check it before it is written.

use std::path::{Path, PathBuf};

use super::deploy::{check_name, failed, usage};
use super::CliError;
use crate::deploy::document::{self, Deployment};
use crate::deploy::store;
use crate::signing;

/// `ledge keygen --id ID --out FILE`: writes the secret seed (mode 0600)
/// and prints the public key line for `[deploy] trusted_keys`.
pub fn keygen(id: &str, out: &Path) -> Result<(), CliError> {
    signing::parse_public_key(&format!("{id}:{}", "00".repeat(32))).map_err(usage)?;
    if out.exists() {
        return Err(usage(format!(
            "{} exists; refusing to overwrite a key",
            out.display()
        )));
    }
    let (seed, public) = signing::generate().map_err(failed)?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| failed(format!("cannot create {}: {e}", out.display())))?;
    writeln!(file, "{}", store::hex(&seed))
        .map_err(|e| failed(format!("cannot write {}: {e}", out.display())))?;
    let line = format!("{id}:{}", store::hex(&public));
    std::fs::write(out.with_extension("pub"), format!("{line}\n"))
        .map_err(|e| failed(format!("cannot write the public key: {e}")))?;
    println!("{line}");
    eprintln!(
        "secret key in {} (keep it off the gateways); add the line above to [deploy] trusted_keys",
        out.display()
    );
    Ok(())
}

/// `ledge sign`'s arguments.
#[derive(Debug, clap::Args)]
pub struct SignRequest {
    pub function: String,
    pub module: PathBuf,
    /// The version number it will have on the gateways (must be above
    /// every version they have).
    #[arg(long)]
    pub version: u32,
    /// Point this alias at it once it is installed (watched, rolled back
    /// automatically if it fails).
    #[arg(long)]
    pub alias: Option<String>,
    /// The secret key file from `ledge keygen`.
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub key_id: String,
    #[arg(long, default_value_t = 65536)]
    pub chunk_size: u64,
    /// Settings the version pins (the config's are used otherwise).
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub timeout: Option<String>,
    /// KEY=VALUE, repeatable.
    #[arg(long)]
    pub env: Vec<String>,
    #[arg(long)]
    pub out: PathBuf,
}

/// `ledge sign`: writes `OUT/deployment.json` (publish it on
/// `<prefix>/deploy`) and `OUT/chunks/<index>` (publish each on
/// `<prefix>/deploy/chunk/<function>/<version>/<index>`).
pub fn sign(request: &SignRequest) -> Result<(), CliError> {
    let key_text =
        crate::config::files::read_capped(&request.key, crate::config::files::MAX_SECRET_FILE)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                usage(format!(
                    "cannot read key {}: not a readable regular UTF-8 file of at most 1 MiB",
                    request.key.display()
                ))
            })?;
    let seed = signing::parse_secret_key(&key_text)
        .map_err(|e| usage(format!("{}: {e}", request.key.display())))?;
    check_name(&request.function, "function")?;
    if let Some(alias) = &request.alias {
        check_name(alias, "alias")?;
    }
    let bytes = crate::runtime::read_module(&request.module).map_err(usage)?;
    wasmi::Module::new(&wasmi::Engine::default(), &bytes[..]).map_err(|e| {
        usage(format!(
            "{} is not valid WebAssembly: {e}",
            request.module.display()
        ))
    })?;
    let mut settings = store::Settings::default();
    if let Some(memory) = &request.memory {
        settings.memory_bytes = Some(
            crate::units::parse_size(memory)
                .map_err(|e| usage(format!("--memory {memory}: {e}")))?,
        );
    }
    if let Some(timeout) = &request.timeout {
        settings.timeout_ms = Some(
            crate::units::parse_duration(timeout)
                .map_err(|e| usage(format!("--timeout {timeout}: {e}")))?
                .as_millis() as u64,
        );
    }
    for pair in &request.env {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| usage(format!("--env `{pair}`: write KEY=VALUE")))?;
        settings.env.insert(k.to_owned(), v.to_owned());
    }
    let deployment = Deployment {
        format: document::FORMAT.to_owned(),
        function: request.function.clone(),
        version: request.version,
        alias: request.alias.clone(),
        sha256: store::sha256_hex(&bytes),
        size: bytes.len() as u64,
        chunk_size: request.chunk_size,
        settings,
        created_at_ms: store::now_ms(),
    };
    let envelope = document::seal(&deployment, &request.key_id, &seed).map_err(failed)?;
    // Check what we wrote the way a gateway will.
    let public = signing::public_key(&seed).map_err(failed)?;
    let payload = serde_json::to_vec(&envelope).map_err(failed)?;
    document::verify(&payload, &[(request.key_id.clone(), public)], u64::MAX).map_err(usage)?;
    let chunks_dir = request.out.join("chunks");
    std::fs::create_dir_all(&chunks_dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", chunks_dir.display())))?;
    std::fs::write(request.out.join("deployment.json"), &payload)
        .map_err(|e| failed(format!("cannot write deployment.json: {e}")))?;
    for (index, chunk) in bytes.chunks(request.chunk_size as usize).enumerate() {
        let path: PathBuf = chunks_dir.join(index.to_string());
        std::fs::write(&path, chunk)
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
    }
    println!(
        "{}:{} signed by {}: {} bytes in {} chunks, sha256 {}",
        deployment.function,
        deployment.version,
        request.key_id,
        deployment.size,
        deployment.chunks(),
        deployment.sha256
    );
    println!(
        "publish {} on <prefix>/deploy and chunks/N on <prefix>/deploy/chunk/{}/{}/N",
        request.out.join("deployment.json").display(),
        deployment.function,
        deployment.version
    );
    Ok(())
}
