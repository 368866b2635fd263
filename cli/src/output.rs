//! Writing to stdout and to files.

use std::path::Path;

use serde::Serialize;

use crate::error::CliError;

/// Like `println!`, but a closed stdout (`sluice ... | head`) ends output quietly instead of
/// panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Writes `value` as pretty JSON to `path`, if one was given.
pub fn write_json<T: Serialize + ?Sized>(path: Option<&Path>, value: &T) -> Result<(), CliError> {
    let Some(path) = path else {
        return Ok(());
    };
    let json = serde_json::to_string_pretty(value)?;
    std::fs::write(path, json).map_err(|source| CliError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks, before a run starts, that `path` can be written: its directory exists and a file
/// can be created there. A file the check creates is removed again.
pub fn check_writable(path: Option<&Path>) -> Result<(), CliError> {
    let Some(path) = path else {
        return Ok(());
    };
    let existed = path.exists();
    let res = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map(drop);
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    res.map_err(|source| CliError::Write {
        path: path.to_path_buf(),
        source,
    })
}
