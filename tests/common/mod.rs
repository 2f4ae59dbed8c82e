//! Shared test helpers: fixtures, configs, free ports, the real `ledge`
//! binary, a real mosquitto, and an MQTT client.
#![allow(dead_code)]

pub mod broker;
pub mod disk;
pub mod process;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Assembles `tests/fixtures/wat/<name>.wat` into `<dir>/<name>.wasm`.
pub fn fixture(dir: &Path, name: &str) -> PathBuf {
    let source = repo()
        .join("tests/fixtures/wat")
        .join(format!("{name}.wat"));
    let wasm = wat::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wasm).expect("write fixture");
    path
}

/// A prebuilt example function from `functions/dist`.
pub fn example(name: &str) -> PathBuf {
    let path = repo().join("functions/dist").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing; run functions/build.sh",
        path.display()
    );
    path
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Writes `text` as `<dir>/ledge.toml` and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("ledge.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A `[[function]]` table.
pub fn function_toml(name: &str, module: &Path, extra: &str) -> String {
    format!(
        "[[function]]\nname = \"{name}\"\nmodule = \"{}\"\n{extra}\n",
        module.display()
    )
}

/// An `mqtt` `[[trigger]]` table.
pub fn mqtt_trigger(topic: &str, function: &str) -> String {
    format!("[[trigger]]\nsource = \"mqtt\"\ntopic = \"{topic}\"\nfunction = \"{function}\"\n")
}
