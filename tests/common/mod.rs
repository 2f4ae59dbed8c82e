//! Shared test helpers: fixtures, configs, free ports, the real `ledge`
//! binary (`process`), a real mosquitto and MQTT clients (`broker`), a
//! whole gateway under test (`gateway`), fake hardware (`fake_hw`) and a
//! real small disk (`disk`).
#![allow(dead_code)]

pub mod broker;
pub mod disk;
pub mod fake_hw;
pub mod gateway;
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

/// A function that publishes each event's payload to `out/<tag>`; with
/// `fail`, it then fails ("failing on purpose"). Written as
/// `<dir>/<tag>.wasm`: the versions deployment tests switch between.
pub fn tagged(dir: &Path, tag: &str, fail: bool) -> PathBuf {
    let topic = format!("out/{tag}");
    let end = if fail {
        "(drop (call $respond (i32.const 64) (i32.const 18))) (i32.const 1)"
    } else {
        "(i32.const 0)"
    };
    let wat = format!(
        r#"(module
  (import "ledge_v1" "publish" (func $publish (param i32 i32 i32 i32 i32) (result i32)))
  (import "ledge_v1" "respond" (func $respond (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{topic}")
  (data (i32.const 64) "failing on purpose")
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ledge_handle") (param $ptr i32) (param $len i32) (result i32)
    (drop (call $publish (i32.const 0) (i32.const {len}) (local.get $ptr) (local.get $len) (i32.const 1)))
    {end}))"#,
        len = topic.len()
    );
    let path = dir.join(format!("{tag}.wasm"));
    std::fs::write(&path, wat::parse_str(&wat).expect("tagged module")).expect("write module");
    path
}
