//! `ledge versions` and `ledge functions`: what the function store holds,
//! as a table or JSON, with what a running ledge says about each function.

use std::path::Path;

use super::deploy::{check_name, failed};
use super::{load_config, CliError};
use crate::deploy::store::Store;

/// `ledge versions NAME`.
pub fn versions(config: &Path, function: &str, json: bool) -> Result<(), CliError> {
    check_name(function, "function")?;
    let plan = load_config(config)?;
    let store = Store::under(&plan.device.data_dir);
    let state = store.state(function).map_err(failed)?;
    if json {
        println!("{}", serde_json::to_string(&state).map_err(failed)?);
        return Ok(());
    }
    println!(
        "{:<9} {:<14} {:>9} {:<8} {:<20} aliases",
        "version", "sha256", "bytes", "origin", "published"
    );
    if let Some(draft) = &state.latest {
        println!(
            "{:<9} {:<14} {:>9} {:<8} {:<20}",
            "$LATEST",
            &draft.sha256[..12.min(draft.sha256.len())],
            draft.size,
            "draft",
            format_ms(draft.deployed_at_ms)
        );
    }
    for (number, version) in &state.versions {
        let aliases: Vec<String> = state
            .aliases
            .iter()
            .filter(|(_, a)| a.target.versions().any(|v| v == *number))
            .map(|(name, a)| match a.target.canary {
                Some((v, pct)) if v == *number => format!("{name} ({pct}%)"),
                Some((_, pct)) => format!("{name} ({}%)", 100 - pct),
                None => name.clone(),
            })
            .collect();
        println!(
            "{:<9} {:<14} {:>9} {:<8} {:<20} {}",
            number,
            &version.sha256[..12.min(version.sha256.len())],
            version.size,
            version.origin,
            format_ms(version.published_at_ms),
            aliases.join(", ")
        );
    }
    Ok(())
}

/// `ledge functions`: every configured function with its store entry.
pub fn functions(config: &Path, json: bool) -> Result<(), CliError> {
    let plan = load_config(config)?;
    let store = Store::under(&plan.device.data_dir);
    let running = crate::control::request(
        &crate::control::socket_path(&plan.device.data_dir),
        "status",
    )
    .ok();
    let mut rows = Vec::new();
    for spec in plan.functions.iter().filter(|f| f.version == "$LATEST") {
        let state = store.state(&spec.name).map_err(failed)?;
        let aliases: serde_json::Map<String, serde_json::Value> = state
            .aliases
            .iter()
            .map(|(name, a)| {
                let mut text = a.target.to_string();
                if a.probation.is_some() {
                    text.push_str(" [probation]");
                }
                (name.clone(), text.into())
            })
            .collect();
        let latest = match &state.latest {
            Some(draft) => format!("store {}", &draft.sha256[..12.min(draft.sha256.len())]),
            None => format!("config {}", spec.module_path.display()),
        };
        let state_text = match &running {
            None => "not running".to_owned(),
            Some(status) => {
                let loaded = status["functions"]
                    .as_object()
                    .map(|f| {
                        f.iter()
                            .filter(|(k, m)| {
                                (*k == &spec.name || k.starts_with(&format!("{}:", spec.name)))
                                    && m["loaded"] != false
                            })
                            .map(|(k, _)| k.clone())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                format!("running {}", loaded.join(" "))
            }
        };
        rows.push(serde_json::json!({
            "function": spec.name,
            "latest": latest,
            "versions": state.versions.keys().collect::<Vec<_>>(),
            "aliases": aliases,
            "default_alias": spec.default_alias,
            "state": state_text,
        }));
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    use super::table::Align::Left;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let versions: Vec<String> = row["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.to_string())
                .collect();
            let aliases: Vec<String> = row["aliases"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            let text = |key: &str| row[key].as_str().unwrap_or_default().to_owned();
            vec![
                text("function"),
                text("latest"),
                versions.join(","),
                aliases.join(" "),
                text("state"),
            ]
        })
        .collect();
    print!(
        "{}",
        super::table::render(
            &[
                ("function", Left),
                ("$LATEST", Left),
                ("versions", Left),
                ("aliases", Left),
                ("state", Left),
            ],
            &table,
        )
    );
    Ok(())
}

fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::logging::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60
    )
}
