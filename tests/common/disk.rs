//! A real small file system for disk-full tests.
//!
//! Mounting needs root (CI and tests/run.sh run as root). Without it a test
//! using this fails and says so rather than pretending: a size limit cannot
//! be faked without a real file system that returns ENOSPC.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted at `path`, unmounted on drop.
pub struct SmallDisk(pub PathBuf);

impl SmallDisk {
    pub fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(path.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
