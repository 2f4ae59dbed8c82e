//! `ledge new NAME --lang rust|c|assemblyscript`: a function project that
//! builds and passes `ledge invoke` out of the box.
//!
//! The templates live in `functions/templates` and are built into the
//! binary, together with the bindings each language needs (the Rust SDK's
//! sources, the C header, the AssemblyScript declarations), so a project
//! made here builds on its own, offline, with the bindings of this ledge.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::CliError;

/// The language of a new function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    C,
    #[value(alias = "as")]
    Assemblyscript,
}

macro_rules! template {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/functions/", $path))
    };
}

/// Files every project gets: (path, template).
const COMMON: &[(&str, &str)] = &[
    ("event.json", template!("templates/event.json")),
    ("ledge.toml", template!("templates/ledge.toml")),
];

const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", template!("templates/rust/Cargo.toml")),
    (
        ".cargo/config.toml",
        template!("templates/rust/cargo-config.toml"),
    ),
    ("src/lib.rs", template!("templates/rust/src/lib.rs")),
    ("build.sh", template!("templates/rust/build.sh")),
    (
        "ledge-sdk/Cargo.toml",
        template!("templates/rust/ledge-sdk.Cargo.toml"),
    ),
    ("ledge-sdk/src/lib.rs", template!("sdk/src/lib.rs")),
    ("ledge-sdk/src/context.rs", template!("sdk/src/context.rs")),
    ("ledge-sdk/src/event.rs", template!("sdk/src/event.rs")),
    ("ledge-sdk/src/gpio.rs", template!("sdk/src/gpio.rs")),
    ("ledge-sdk/src/handler.rs", template!("sdk/src/handler.rs")),
    ("ledge-sdk/src/heap.rs", template!("sdk/src/heap.rs")),
    ("ledge-sdk/src/log.rs", template!("sdk/src/log.rs")),
    ("ledge-sdk/src/mock.rs", template!("sdk/src/mock.rs")),
    ("ledge-sdk/src/publish.rs", template!("sdk/src/publish.rs")),
    ("ledge-sdk/src/sys.rs", template!("sdk/src/sys.rs")),
    ("ledge-sdk/src/tests.rs", template!("sdk/src/tests.rs")),
    (".gitignore", "/target\n*.wasm\n"),
];

const C: &[(&str, &str)] = &[
    ("{{name}}.c", template!("templates/c/function.c")),
    ("ledge.h", template!("include/ledge.h")),
    ("build.sh", template!("templates/c/build.sh")),
    (".gitignore", "*.wasm\n"),
];

const ASSEMBLYSCRIPT: &[(&str, &str)] = &[
    (
        "assembly/index.ts",
        template!("templates/assemblyscript/index.ts"),
    ),
    ("assembly/ledge.ts", template!("assemblyscript/ledge.ts")),
    (
        "package.json",
        template!("templates/assemblyscript/package.json"),
    ),
    ("build.sh", template!("templates/assemblyscript/build.sh")),
    (".gitignore", "/node_modules\n*.wasm\n"),
];

const README: &str = template!("templates/readme.template.md");

/// What each language's files are, for the README.
fn described(lang: Lang) -> (&'static str, &'static str) {
    match lang {
        Lang::Rust => (
            "Rust",
            "| `src/lib.rs` | the handler, with tests (`cargo test`) |\n\
             | `ledge-sdk/` | the ledge SDK for Rust (a copy: builds offline) |\n\
             | `build.sh` | `cargo build` for wasm32-unknown-unknown, copied to `{{name}}.wasm` |\n",
        ),
        Lang::C => (
            "C",
            "| `{{name}}.c` | the handler, no libc |\n\
             | `ledge.h` | the ledge ABI for C |\n\
             | `build.sh` | clang for wasm32 (needs clang and lld) |\n",
        ),
        Lang::Assemblyscript => (
            "AssemblyScript",
            "| `assembly/index.ts` | the handler |\n\
             | `assembly/ledge.ts` | the ledge ABI for AssemblyScript |\n\
             | `build.sh` | asc (run `npm install` first) |\n",
        ),
    }
}

/// `ledge new NAME --lang LANG [--dir DIR]`.
pub fn new(name: &str, lang: Lang, dir: Option<&Path>) -> Result<(), CliError> {
    check_name(name)?;
    let root: PathBuf = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if root.exists() {
        return Err(CliError::Usage(anyhow!(
            "{} exists; ledge new makes a new directory (choose another with --dir)",
            root.display()
        )));
    }
    let files = match lang {
        Lang::Rust => RUST,
        Lang::C => C,
        Lang::Assemblyscript => ASSEMBLYSCRIPT,
    };
    let (lang_name, listing) = described(lang);
    let readme = README
        .replace("{{lang}}", lang_name)
        .replace("{{files}}", listing);
    let crate_name = name.replace('-', "_");
    let render = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
    };
    let all = files
        .iter()
        .chain(COMMON)
        .copied()
        .chain([("README.md", readme.as_str())]);
    for (path, text) in all {
        let path = root.join(render(path));
        write(&path, &render(text))?;
    }
    println!("created {} ({lang_name}): next,", root.display());
    println!("  cd {}", root.display());
    if lang == Lang::Assemblyscript {
        println!("  npm install");
    }
    println!("  ./build.sh");
    println!("  ledge invoke {name} --config ledge.toml --event-file event.json");
    Ok(())
}

/// A function name that is also a valid crate, file and topic name.
fn check_name(name: &str) -> Result<(), CliError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if first_ok && rest_ok && name.len() <= 64 {
        return Ok(());
    }
    Err(CliError::Usage(anyhow!(
        "`{name}` cannot name a function: use 1-64 letters, digits, `-` or `_`, starting with a letter"
    )))
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    let failed =
        |e: std::io::Error| CliError::Failed(anyhow!("cannot write {}: {e}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    std::fs::write(path, text).map_err(failed)?;
    if path.extension().is_some_and(|e| e == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_a_crate_a_file_and_a_topic() {
        assert!(check_name("door-sensor_2").is_ok());
        for bad in ["", "2door", "-x", "a/b", "a b", "a.b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
