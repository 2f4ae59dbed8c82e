//! The guest bindings are rendered from the contract table
//! (`src/runtime/contract.rs`) and the committed files are exactly what it
//! renders: `functions/include/ledge.h` (C), `functions/assemblyscript/ledge.ts`
//! (AssemblyScript) and the generated block of `docs/abi.md`. After changing
//! the table, rerun with `LEDGE_BLESS=1` to rewrite them.

use std::path::Path;

use crate::common;

use ledge::runtime::contract::{
    self, Constant, Import, ParamKind, WasmType, CODES, IMPORTS, INT_FIELDS, OTHER, STATUSES,
    STRING_FIELDS,
};

const GENERATED: &str =
    "GENERATED from src/runtime/contract.rs by tests/it/the_guest_abi/bindings.rs: do not edit; after changing the table run `LEDGE_BLESS=1 cargo test --test it the_guest_abi::bindings`";

fn constant_groups() -> [(&'static str, &'static [Constant]); 5] {
    [
        ("Return codes of the host calls", CODES),
        ("`context` string fields", STRING_FIELDS),
        ("`context_int` fields", INT_FIELDS),
        ("`ledge_handle` statuses", STATUSES),
        ("Flags, levels and limits", OTHER),
    ]
}

fn c_param(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::In => "const void *",
        ParamKind::Out => "void *",
        ParamKind::Len => "ledge_size ",
        ParamKind::Int => "ledge_i32 ",
    }
}

fn c_result(result: Option<WasmType>) -> &'static str {
    match result {
        None => "void",
        Some(WasmType::I32) => "ledge_i32",
        Some(WasmType::I64) => "ledge_i64",
        Some(WasmType::F64) => "double",
    }
}

fn render_c() -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "/* ledge.h: the {} guest ABI for C (docs/abi.md).\n *\n * {GENERATED}.\n *\n",
        contract::IMPORT_MODULE
    ));
    out.push_str(
        " * Build: clang --target=wasm32 -nostdlib -O2 -mbulk-memory -Ifunctions/include \\\n *   -Wl,--no-entry -Wl,-z,stack-size=65536 -o f.wasm f.c\n */\n",
    );
    out.push_str("#ifndef LEDGE_H\n#define LEDGE_H\n\n");
    out.push_str("/* No libc needed: the compiler's own fixed-width types. */\ntypedef __INT32_TYPE__ ledge_i32;\ntypedef __INT64_TYPE__ ledge_i64;\ntypedef __SIZE_TYPE__ ledge_size;\n\n");
    for (title, constants) in constant_groups() {
        out.push_str(&format!("/* {} */\n", title.replace('`', "")));
        for c in constants {
            out.push_str(&format!(
                "#define LEDGE_{} ({}) /* {} */\n",
                c.name, c.value, c.meaning
            ));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "#define LEDGE_IMPORT(name) __attribute__((import_module(\"{}\"), import_name(name)))\n",
        contract::IMPORT_MODULE
    ));
    out.push_str("#define LEDGE_EXPORT(name) __attribute__((export_name(name)))\n\n");
    out.push_str(
        "/* Host functions. Pointers are into this module's memory; a length is in bytes. */\n",
    );
    for import in IMPORTS {
        out.push_str(&format!("/* {} */\n", import.summary));
        let params: Vec<String> = import
            .params
            .iter()
            .map(|p| format!("{}{}", c_param(p.kind), p.name))
            .collect();
        let params = if params.is_empty() {
            "void".to_owned()
        } else {
            params.join(", ")
        };
        out.push_str(&format!(
            "LEDGE_IMPORT(\"{}\") {} ledge_{}({params});\n",
            import.name,
            c_result(import.result),
            import.name
        ));
    }
    out.push_str(
        "\n/* What the module defines (ledge_init is optional). */\n\
         LEDGE_EXPORT(\"ledge_alloc\") void *ledge_alloc(ledge_size len);\n\
         LEDGE_EXPORT(\"ledge_handle\") ledge_i32 ledge_handle(void *ptr, ledge_size len);\n\
         LEDGE_EXPORT(\"ledge_init\") ledge_i32 ledge_init(void);\n\n\
         #endif /* LEDGE_H */\n",
    );
    out
}

fn as_type(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::In | ParamKind::Out | ParamKind::Len => "usize",
        ParamKind::Int => "i32",
    }
}

fn as_result(result: Option<WasmType>) -> &'static str {
    match result {
        None => "void",
        Some(WasmType::I32) => "i32",
        Some(WasmType::I64) => "i64",
        Some(WasmType::F64) => "f64",
    }
}

fn render_assemblyscript() -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "// ledge.ts: the {} guest ABI for AssemblyScript (docs/abi.md).\n//\n// {GENERATED}.\n//\n",
        contract::IMPORT_MODULE
    ));
    out.push_str("// Build: asc assembly/index.ts --runtime incremental --exportRuntime=false -O3 \\\n//   --outFile f.wasm (env.abort and env.seed are provided by ledge).\n\n");
    for (title, constants) in constant_groups() {
        out.push_str(&format!("// {}\n", title.replace('`', "")));
        for c in constants {
            out.push_str(&format!(
                "export const {}: i32 = {}; // {}\n",
                c.name, c.value, c.meaning
            ));
        }
        out.push('\n');
    }
    out.push_str(
        "// Host functions. Pointers are into this module's memory; a length is in bytes.\n",
    );
    for import in IMPORTS {
        let params: Vec<String> = import
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, as_type(p.kind)))
            .collect();
        out.push_str(&format!(
            "\n// {}\n// @ts-ignore: decorator\n@external(\"{}\", \"{}\")\nexport declare function {}({}): {};\n",
            import.summary,
            contract::IMPORT_MODULE,
            import.name,
            import.name,
            params.join(", "),
            as_result(import.result)
        ));
    }
    out
}

fn wasm_name(t: WasmType) -> &'static str {
    match t {
        WasmType::I32 => "i32",
        WasmType::I64 => "i64",
        WasmType::F64 => "f64",
    }
}

fn signature(import: &Import) -> String {
    let params: Vec<String> = import
        .params
        .iter()
        .map(|p| format!("{}: i32", p.name))
        .collect();
    match import.result {
        None => format!("({})", params.join(", ")),
        Some(r) => format!("({}) -> {}", params.join(", "), wasm_name(r)),
    }
}

const DOC_BEGIN: &str = "<!-- BEGIN GENERATED contract table -->";
const DOC_END: &str = "<!-- END GENERATED contract table -->";

fn render_doc_block() -> String {
    let mut out = format!("{DOC_BEGIN}\n<!-- {GENERATED} -->\n\n");
    out.push_str(&format!(
        "Imports, module `{}`:\n\n| import | signature | what it does |\n|---|---|---|\n",
        contract::IMPORT_MODULE
    ));
    for import in IMPORTS {
        out.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            import.name,
            signature(import),
            import.summary
        ));
    }
    out.push_str("\nToolchain imports ledge also provides:\n\n| import | signature | what it does |\n|---|---|---|\n");
    for import in contract::TOOLCHAIN_IMPORTS {
        let params: Vec<&str> = import.params.iter().map(|t| wasm_name(*t)).collect();
        let result = import
            .result
            .map(|r| format!(" -> {}", wasm_name(r)))
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{}.{}` | `({}){result}` | {} |\n",
            import.module,
            import.name,
            params.join(", "),
            import.summary
        ));
    }
    for (title, constants) in constant_groups() {
        out.push_str(&format!(
            "\n{title}:\n\n| value | name | meaning |\n|---|---|---|\n"
        ));
        for c in constants {
            out.push_str(&format!(
                "| `{}` | `{}` | {} |\n",
                c.value, c.name, c.meaning
            ));
        }
    }
    out.push_str(&format!(
        "\nAccepted wasm features beyond the MVP: {}.\n",
        contract::WASM_FEATURES.join(", ")
    ));
    out.push_str(DOC_END);
    out
}

/// Compares `path` with `expected`; with LEDGE_BLESS set, writes it first.
fn check(path: &Path, expected: &str) {
    if std::env::var_os("LEDGE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, expected).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == expected,
        "{} is not what src/runtime/contract.rs renders: rerun with LEDGE_BLESS=1 and commit it",
        path.display()
    );
}

#[test]
fn the_c_header_is_rendered_from_the_contract() {
    check(
        &common::repo().join("functions/include/ledge.h"),
        &render_c(),
    );
}

#[test]
fn the_assemblyscript_declarations_are_rendered_from_the_contract() {
    check(
        &common::repo().join("functions/assemblyscript/ledge.ts"),
        &render_assemblyscript(),
    );
}

#[test]
fn the_abi_doc_table_is_rendered_from_the_contract() {
    let path = common::repo().join("docs/abi.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(begin), Some(end)) = (doc.find(DOC_BEGIN), doc.find(DOC_END)) else {
        panic!("docs/abi.md has no generated block ({DOC_BEGIN} ... {DOC_END})");
    };
    let expected = format!(
        "{}{}{}",
        &doc[..begin],
        render_doc_block(),
        &doc[end + DOC_END.len()..]
    );
    check(&path, &expected);
}

#[test]
fn every_import_and_constant_is_in_every_binding() {
    // A guard on the renderers themselves: nothing in the table is skipped.
    let (c, ts) = (render_c(), render_assemblyscript());
    for import in IMPORTS {
        assert!(
            c.contains(&format!("import_name(\"{}\")", import.name))
                || c.contains(&format!("LEDGE_IMPORT(\"{}\")", import.name))
        );
        assert!(ts.contains(&format!(
            "\"{}\")\nexport declare function {}(",
            import.name, import.name
        )));
    }
    for (_, constants) in constant_groups() {
        for constant in constants {
            assert!(c.contains(&format!(
                "#define LEDGE_{} ({})",
                constant.name, constant.value
            )));
            assert!(ts.contains(&format!(
                "export const {}: i32 = {};",
                constant.name, constant.value
            )));
        }
    }
}
