//! `sluice report FILE`: renders a saved JSON report again.
//!
//! A report file is input like any other: it is read up to a size cap, must be a regular
//! file, and every string in it is printed with control characters escaped (a crafted report
//! cannot send escape sequences to the terminal).

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use sluice::engine::JobReport;
use sluice_workloads::overload::ScenarioResult;

use crate::error::CliError;
use crate::scenario;

/// The largest report read: a 100 ms series of an hour-long run is well under it.
const MAX_REPORT_BYTES: u64 = 256 << 20;

/// Renders a scenario result, a list of them, or an engine job report.
pub fn render(file: &Path) -> Result<(), CliError> {
    let read = |source| CliError::Read {
        path: file.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(file).map_err(read)?;
    if !meta.is_file() {
        return Err(CliError::Usage(format!(
            "{} is not a regular file: give a report written with --json",
            file.display()
        )));
    }
    let mut text = String::new();
    std::fs::File::open(file)
        .map_err(read)?
        .take(MAX_REPORT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_REPORT_BYTES {
        return Err(CliError::Usage(format!(
            "{} is larger than 256 MiB: not a report written with --json",
            file.display()
        )));
    }
    let mut value: Value = serde_json::from_str(&text).map_err(|e| not_a_report(file, &e))?;
    escape_strings(&mut value);
    if let Ok(r) = serde_json::from_value::<ScenarioResult>(value.clone()) {
        scenario::render(std::slice::from_ref(&r));
        return Ok(());
    }
    if let Ok(rs) = serde_json::from_value::<Vec<ScenarioResult>>(value.clone()) {
        scenario::render(&rs);
        return Ok(());
    }
    match serde_json::from_value::<JobReport>(value) {
        Ok(r) => {
            outln!("{r}");
            Ok(())
        }
        Err(e) => Err(not_a_report(file, &e)),
    }
}

fn not_a_report(file: &Path, e: &serde_json::Error) -> CliError {
    CliError::Usage(format!(
        "{} is not a Sluice report ({e}); write one with `sluice run w1 --json FILE` or `sluice bench overload --json FILE`",
        file.display()
    ))
}

/// Replaces control characters in every string (keys too) with their `\u{..}` escapes.
fn escape_strings(v: &mut Value) {
    fn esc(s: &str) -> String {
        s.chars()
            .flat_map(|c| {
                if c.is_control() {
                    format!("\\u{{{:x}}}", c as u32).chars().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect()
    }
    match v {
        Value::String(s) if s.chars().any(char::is_control) => *s = esc(s),
        Value::Array(a) => a.iter_mut().for_each(escape_strings),
        Value::Object(o) => {
            let entries: Vec<(String, Value)> = std::mem::take(o).into_iter().collect();
            for (k, mut val) in entries {
                escape_strings(&mut val);
                o.insert(esc(&k), val);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_everywhere() {
        let mut v: Value =
            serde_json::from_str(r#"{"job":"x\u001b[2Jy","k\u0007":["a\nb",1]}"#).unwrap();
        escape_strings(&mut v);
        assert_eq!(v["job"], "x\\u{1b}[2Jy");
        assert_eq!(v["k\\u{7}"][0], "a\\u{a}b");
    }
}
