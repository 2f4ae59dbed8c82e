//! Which wasm function a trap happened in.
//!
//! wasmi 2.0 reports a trap's cause but not where it happened. For a module
//! that has a name section (built unstripped, so its author wants functions
//! named), the loader rewrites it before compiling: every defined function
//! stores its own index in a new mutable global on entry and again after
//! each call it makes returns, and the global is exported as
//! [`SITE_EXPORT`]. After a trap the host reads it and names the function
//! from the name section. A stripped module is left exactly as it is and
//! pays nothing.
//!
//! The rewrite splices bytes into the original module (a new global, a new
//! export, two instructions per function entry and per call site) without
//! re-encoding anything else, so function, type and global indices do not
//! move. Anything unexpected while reading the module abandons the rewrite,
//! and the caller compiles the original.

use std::collections::HashMap;
use std::ops::Range;

use wasmparser::{
    BinaryReader, CodeSectionReader, CustomSectionReader, GlobalSectionReader, ImportSectionReader,
    Name, NameSectionReader, Operator, TypeRef,
};

/// The export through which the host reads the site.
pub const SITE_EXPORT: &str = "__ledge_trap_site";

/// Function names by index, from a module's name section.
#[derive(Debug, Default)]
pub struct TrapSites {
    names: HashMap<u32, Box<str>>,
}

impl TrapSites {
    /// The name of function `index`, if the module named it.
    pub fn name(&self, index: u32) -> Option<&str> {
        self.names.get(&index).map(|name| &**name)
    }
}

/// Section ids, and the order sections must appear in.
const GLOBAL: u8 = 6;
const EXPORT: u8 = 7;
const CODE: u8 = 10;
const IMPORT: u8 = 2;
const CUSTOM: u8 = 0;
const SECTION_ORDER: [u8; 13] = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];

struct Section {
    id: u8,
    /// The section's contents (after its id and size).
    content: Range<usize>,
}

/// The instrumented module and the names to report, or `None` when the
/// module has no function names or could not be rewritten.
pub fn instrument(module: &[u8]) -> Option<(Vec<u8>, TrapSites)> {
    rewrite(module).ok().flatten()
}

/// The module could not be read as expected; it is compiled unchanged.
struct Unreadable;

impl From<wasmparser::BinaryReaderError> for Unreadable {
    fn from(_: wasmparser::BinaryReaderError) -> Self {
        Unreadable
    }
}

type Result<T> = std::result::Result<T, Unreadable>;

fn rewrite(module: &[u8]) -> Result<Option<(Vec<u8>, TrapSites)>> {
    let Some(sections) = sections(module) else {
        return Ok(None);
    };
    let mut imported_functions = 0u32;
    let mut imported_globals = 0u32;
    let mut defined_globals = 0u32;
    let mut sites = TrapSites::default();
    for section in &sections {
        let reader = BinaryReader::new(&module[section.content.clone()], section.content.start);
        match section.id {
            IMPORT => {
                for import in ImportSectionReader::new(reader)? {
                    match import?.ty {
                        TypeRef::Func(_) => imported_functions += 1,
                        TypeRef::Global(_) => imported_globals += 1,
                        _ => {}
                    }
                }
            }
            GLOBAL => defined_globals = GlobalSectionReader::new(reader)?.count(),
            CUSTOM => {
                let custom = CustomSectionReader::new(reader)?;
                if custom.name() == "name" {
                    read_names(&custom, &mut sites)?;
                }
            }
            _ => {}
        }
    }
    let has = |id: u8| sections.iter().any(|s| s.id == id);
    let taken = module
        .windows(SITE_EXPORT.len())
        .any(|w| w == SITE_EXPORT.as_bytes());
    if sites.names.is_empty() || !has(CODE) || !has(EXPORT) || taken {
        return Ok(None);
    }
    let site = imported_globals + defined_globals;

    let mut out = module[..8].to_vec();
    let mut global_written = false;
    let rank = |id: u8| SECTION_ORDER.iter().position(|&o| o == id);
    let global_rank = rank(GLOBAL);
    for section in &sections {
        let content = &module[section.content.clone()];
        // A module without globals gets a global section where one belongs.
        if !global_written && section.id != CUSTOM && rank(section.id) > global_rank {
            emit(&mut out, GLOBAL, &globals(&[], 0));
            global_written = true;
        }
        match section.id {
            GLOBAL => {
                emit(&mut out, GLOBAL, &globals(content, defined_globals));
                global_written = true;
            }
            EXPORT => emit(&mut out, EXPORT, &exports(content, site)?),
            CODE => {
                let code = code(module, section.content.clone(), imported_functions, site)?;
                emit(&mut out, CODE, &code);
            }
            id => emit(&mut out, id, content),
        }
    }
    Ok(Some((out, sites)))
}

/// The top-level sections, or `None` if the bytes are not a wasm module
/// this can walk (the caller then compiles them as they are, and wasmi
/// reports what is wrong).
fn sections(module: &[u8]) -> Option<Vec<Section>> {
    if module.len() < 8 || &module[..4] != b"\0asm" || module[4..8] != [1, 0, 0, 0] {
        return None;
    }
    let mut sections = Vec::new();
    let mut at = 8;
    while at < module.len() {
        let id = module[at];
        let (size, used) = read_leb(module.get(at + 1..)?)?;
        let start = at + 1 + used;
        let end = start.checked_add(size as usize)?;
        if end > module.len() {
            return None;
        }
        sections.push(Section {
            id,
            content: start..end,
        });
        at = end;
    }
    Some(sections)
}

fn read_names(custom: &CustomSectionReader<'_>, sites: &mut TrapSites) -> Result<()> {
    let reader = BinaryReader::new(custom.data(), custom.data_offset());
    for subsection in NameSectionReader::new(reader) {
        if let Name::Function(map) = subsection? {
            for naming in map {
                let naming = naming?;
                sites.names.insert(naming.index, naming.name.into());
            }
        }
    }
    Ok(())
}

/// A global section with one more global: `(mut i32) (i32.const 0)`.
fn globals(content: &[u8], count: u32) -> Vec<u8> {
    let entries = match read_leb(content) {
        Some((_, used)) if count > 0 => &content[used..],
        _ => &[],
    };
    let mut out = Vec::with_capacity(content.len() + 8);
    write_leb(&mut out, count + 1);
    out.extend_from_slice(entries);
    out.extend_from_slice(&[0x7f, 0x01, 0x41, 0x00, 0x0b]);
    out
}

/// The export section with [`SITE_EXPORT`] added for global `site`.
fn exports(content: &[u8], site: u32) -> Result<Vec<u8>> {
    let (count, used) = read_leb(content).ok_or(Unreadable)?;
    let mut out = Vec::with_capacity(content.len() + SITE_EXPORT.len() + 8);
    write_leb(&mut out, count + 1);
    out.extend_from_slice(&content[used..]);
    write_leb(&mut out, SITE_EXPORT.len() as u32);
    out.extend_from_slice(SITE_EXPORT.as_bytes());
    out.push(0x03);
    write_leb(&mut out, site);
    Ok(out)
}

/// The code section with each body storing its index on entry and after
/// each call.
fn code(module: &[u8], range: Range<usize>, imported: u32, site: u32) -> Result<Vec<u8>> {
    let reader = BinaryReader::new(&module[range.clone()], range.start);
    let bodies = CodeSectionReader::new(reader)?;
    let mut out = Vec::with_capacity(range.len() + range.len() / 4);
    write_leb(&mut out, bodies.count());
    for (i, body) in bodies.into_iter().enumerate() {
        let body = body?;
        let index = imported + i as u32;
        let mut mark = vec![0x41];
        write_sleb(&mut mark, index as i32 as i64);
        mark.push(0x24);
        write_leb(&mut mark, site);

        let whole = body.get_binary_reader();
        let (start, end) = (
            whole.original_position(),
            whole.original_position() + whole.bytes_remaining(),
        );
        let mut locals = body.get_locals_reader()?;
        for _ in 0..locals.get_count() {
            locals.read()?;
        }
        let mut new_body = module[start..locals.original_position()].to_vec();
        new_body.extend_from_slice(&mark);
        let mut copied = locals.original_position();
        let mut operators = body.get_operators_reader()?;
        while !operators.eof() {
            let operator = operators.read()?;
            if matches!(
                operator,
                Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. }
            ) {
                let after = operators.original_position();
                new_body.extend_from_slice(&module[copied..after]);
                new_body.extend_from_slice(&mark);
                copied = after;
            }
        }
        new_body.extend_from_slice(&module[copied..end]);
        write_leb(&mut out, new_body.len() as u32);
        out.extend_from_slice(&new_body);
    }
    Ok(out)
}

fn emit(out: &mut Vec<u8>, id: u8, content: &[u8]) {
    out.push(id);
    write_leb(out, content.len() as u32);
    out.extend_from_slice(content);
}

/// An unsigned LEB128 u32 and the bytes it took.
fn read_leb(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(5).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

fn write_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn write_sleb(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_round_trips_and_signed_values_encode_as_wasm_expects() {
        for value in [0u32, 1, 127, 128, 624_485, u32::MAX] {
            let mut out = Vec::new();
            write_leb(&mut out, value);
            assert_eq!(read_leb(&out), Some((value, out.len())));
        }
        let sleb = |v| {
            let mut out = Vec::new();
            write_sleb(&mut out, v);
            out
        };
        assert_eq!(sleb(0), [0x00]);
        assert_eq!(sleb(63), [0x3f]);
        assert_eq!(sleb(64), [0xc0, 0x00]);
        assert_eq!(sleb(-1), [0x7f]);
    }

    #[test]
    fn a_module_without_names_is_left_alone() {
        let stripped =
            wat::parse_str("(module (func (export \"f\") (result i32) (i32.const 1)))").unwrap();
        assert!(instrument(&stripped).is_none());
    }

    #[test]
    fn a_named_module_stays_valid_and_keeps_its_behaviour() {
        let named = wat::parse_str(
            r#"(module
                (global $g (mut i32) (i32.const 5))
                (func $helper (result i32) (global.get $g))
                (func $main (export "main") (result i32)
                  (local $x i32)
                  (local.set $x (call $helper))
                  (i32.add (local.get $x) (call $helper))))"#,
        )
        .unwrap();
        let (rewritten, sites) = instrument(&named).expect("named module is instrumented");
        assert_eq!(sites.name(0), Some("helper"));
        assert_eq!(sites.name(1), Some("main"));
        let engine = wasmi::Engine::default();
        let module = wasmi::Module::new(&engine, &rewritten[..]).expect("still valid");
        let mut store = wasmi::Store::new(&engine, ());
        let instance = wasmi::Linker::<()>::new(&engine)
            .instantiate_and_start(&mut store, &module)
            .unwrap();
        let main = instance.get_typed_func::<(), i32>(&store, "main").unwrap();
        assert_eq!(main.call(&mut store, ()).unwrap(), 10);
        // After main returned (its last call restored it), the site is main.
        let site = instance.get_global(&store, SITE_EXPORT).unwrap();
        assert_eq!(site.get(&store).i32(), Some(1));
    }
}
