//! Reading the files a config names (the config itself, modules, secret
//! files): only regular files, and never more than a cap.
//!
//! A FIFO named as a module blocked start-up forever (opening it waits for
//! a writer), and `password_file = "/dev/zero"` grew `ledge check` to
//! 16 GiB. Here a file is opened without blocking, must be a regular file,
//! and is read up to its cap and no further.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest config file.
pub const MAX_CONFIG_FILE: u64 = 16 << 20;
/// Largest secret file (`env_file`, `password_file`).
pub const MAX_SECRET_FILE: u64 = 1 << 20;
/// Largest module file.
pub const MAX_MODULE_FILE: u64 = 64 << 20;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("{path} is not a regular file (it is a {kind})", path = .0.display(), kind = .1)]
    NotRegular(PathBuf, &'static str),
    #[error("{path} is larger than {max} bytes", path = .0.display(), max = .1)]
    TooLarge(PathBuf, u64),
    #[error("cannot read {path}: {error}", path = .0.display(), error = .1)]
    Io(PathBuf, std::io::Error),
}

/// The bytes of the regular file at `path`, if it holds at most `max`.
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => FileError::NotFound(path.to_path_buf()),
        _ => FileError::Io(path.to_path_buf(), e),
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer; on a regular file the flag changes nothing.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let kind = file.metadata().map_err(io)?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "FIFO"
        } else if kind.is_dir() {
            "directory"
        } else if kind.is_char_device() || kind.is_block_device() {
            "device"
        } else if kind.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(FileError::NotRegular(path.to_path_buf(), what));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(FileError::TooLarge(path.to_path_buf(), max));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_capped(&file, 5).unwrap(), b"12345");
        let err = read_capped(&file, 4).unwrap_err().to_string();
        assert!(err.contains("larger than 4 bytes"), "{err}");
        let err = read_capped(dir.path(), 4).unwrap_err().to_string();
        assert!(
            err.contains("not a regular file (it is a directory)"),
            "{err}"
        );
        let err = read_capped(Path::new("/dev/zero"), 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/dev/zero is not a regular file"), "{err}");
        let err = read_capped(&dir.path().join("none"), 4).unwrap_err();
        assert!(matches!(err, FileError::NotFound(_)), "{err}");
    }
}
