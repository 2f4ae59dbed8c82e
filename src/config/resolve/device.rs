//! `[device]` and the board profile (`[device] board`, or `--board`, which
//! wins): who this gateway is, where it keeps its data, and which board's
//! defaults apply where the file says nothing.
//!
//! Files read: `/etc/hostname`, for the default device id when `id` is not
//! set (a hostname that is not a valid id falls back to `ledge`).

use std::path::PathBuf;

use super::Resolver;
use crate::board::Board;
use crate::config::plan::{is_identifier, DevicePlan};
use crate::config::raw::RawDevice;

impl Resolver<'_> {
    /// The board profile: `--board` wins over `[device] board`.
    pub(super) fn board(&mut self, raw: &RawDevice, flag: Option<&str>) -> Option<Board> {
        let (name, span) = match (flag, &raw.board) {
            (Some(flag), _) => (flag.to_owned(), None),
            (None, Some(board)) => (board.get_ref().clone(), Some(board.span())),
            (None, None) => return None,
        };
        let board = crate::board::find(&name);
        if board.is_none() {
            let message = format!(
                "unknown board `{name}` (known: {})",
                crate::board::names().join(", ")
            );
            match span {
                Some(span) => self.fail(span, message),
                None => self.fail_unlocated(format!("--board: {message}")),
            }
        }
        board
    }

    /// `id` and `data_dir`. (`max_concurrency` is checked against the
    /// functions in [`super::functions`]; `gpio_fake` in [`super::gpio`].)
    pub(super) fn device(&mut self, raw: &RawDevice) -> DevicePlan {
        let id = match &raw.id {
            Some(id) => {
                if !is_identifier(id.get_ref(), ".") {
                    self.fail(
                        id.span(),
                        "device id must be 1-64 letters, digits, `-`, `_` or `.` (it is used in MQTT topics)",
                    );
                }
                id.get_ref().clone()
            }
            None => default_device_id(),
        };
        let data_dir = match &raw.data_dir {
            Some(dir) => self.path(dir.get_ref()),
            None => self.board.as_ref().map_or_else(
                || PathBuf::from("/var/lib/ledge"),
                |b| b.defaults.data_dir.clone(),
            ),
        };
        DevicePlan { id, data_dir }
    }
}

fn default_device_id() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| is_identifier(h, "."))
        .unwrap_or_else(|| "ledge".to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse;
    use crate::config::resolve::plan_on;

    #[test]
    fn board_defaults_apply_and_the_file_overrides_them() {
        let text = "[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\n";
        let plain = parse(Path::new("/cfg/ledge.toml"), text).unwrap();
        assert_eq!(plain.functions[0].memory_limit, 16 << 20);
        let zero = plan_on(text, Some("zero2w")).unwrap();
        assert_eq!(zero.functions[0].memory_limit, 8 << 20);
        assert_eq!(zero.spool.max_bytes, 16 << 20);
        assert_eq!(zero.spool.segment_size, 2 << 20, "4 segments must fit");
        let text = "[spool]\nmax_bytes = \"64MiB\"\n[[function]]\nname = \"f\"\nmodule = \"f.wasm\"\nmemory = \"4MiB\"\n";
        let mine = plan_on(text, Some("zero2w")).unwrap();
        assert_eq!(mine.functions[0].memory_limit, 4 << 20);
        assert_eq!(mine.spool.max_bytes, 64 << 20);
        let err = plan_on(text, Some("rpi9")).unwrap_err();
        assert!(err.contains("--board: unknown board `rpi9`"), "{err}");
    }
}
