//! The power-loss model shared by the power-loss tests: the `undo.c` shim, compiled with the
//! machine's C compiler, and the undoing of the writes it logged.
#![allow(dead_code)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// The shim, compiled into `dir`; `None` (skipped, or failed when required) without a C
/// compiler.
pub(crate) fn shim(suite: &str, dir: &Path) -> Option<PathBuf> {
    let cc = flotilla_testkit::tool("cc", suite)?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/powerloss/undo.c");
    let out = dir.join("undo.so");
    let status = Command::new(cc)
        .args(["-shared", "-fPIC", "-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-ldl")
        .status()
        .unwrap();
    assert!(status.success(), "compiling {} failed", src.display());
    Some(out)
}

/// When the power is cut: `delay` after the load has begun to be acknowledged, the shim is
/// told (through `file`) to SIGKILL the process right after its `writes`-th write from then.
pub(crate) struct Cut {
    pub(crate) delay: Duration,
    pub(crate) writes: u64,
    pub(crate) file: PathBuf,
}

impl Cut {
    /// Arms the shim; written under another name first so it never reads half a number.
    pub(crate) fn arm(&self) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, self.writes.to_string()).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }
}

/// The platform's exit status once the shim has killed it; fails after a minute.
pub(crate) fn wait_for_exit(child: &mut Child) -> ExitStatus {
    for _ in 0..1200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the armed shim did not kill the process within a minute");
}

/// What a power cut took: writes undone and files whose directory entry was lost.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Undone {
    pub(crate) writes: usize,
    pub(crate) files: usize,
}

/// Applies every undo log backwards — each file as it was at its last fsync — then deletes
/// the files created since the data directory's last fsync. A file already gone was unlinked
/// after its last write (SQLite's rollback journal); unlinks are not undone.
pub(crate) fn undo_unsynced(logs: &Path, data: &Path) -> Undone {
    let mut undone = Undone::default();
    for entry in std::fs::read_dir(logs).unwrap() {
        let log = entry.unwrap().path();
        let Some(name) = log
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_suffix(".undo")
        else {
            continue;
        };
        let target = data.join(name.replace('%', "/"));
        let records = undo_records(&std::fs::read(&log).unwrap());
        if records.is_empty() || !target.exists() {
            continue;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .unwrap();
        for (offset, old_size, pre) in records.iter().rev() {
            file.write_all_at(pre, *offset).unwrap();
            file.set_len(*old_size).unwrap();
        }
        file.sync_all().unwrap();
        undone.writes += records.len();
    }
    let created = std::fs::read_to_string(logs.join("created")).unwrap_or_default();
    for name in created.lines().collect::<std::collections::BTreeSet<_>>() {
        if std::fs::remove_file(data.join(name)).is_ok() {
            undone.files += 1;
        }
    }
    undone
}

/// (offset, size before, pre-image) records; a record cut short at the end is dropped (its
/// write never started).
fn undo_records(mut bytes: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let field = |b: &[u8], i: usize| i64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    while bytes.len() >= 24 {
        let (offset, old_size, len) = (field(bytes, 0), field(bytes, 1), field(bytes, 2));
        let end = 24 + usize::try_from(len).unwrap();
        if bytes.len() < end {
            break;
        }
        let pre = bytes[24..end].to_vec();
        out.push((offset as u64, old_size as u64, pre));
        bytes = &bytes[end..];
    }
    out
}
