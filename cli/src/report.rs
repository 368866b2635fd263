//! `sluice report FILE`: renders a saved JSON report again.

use std::path::Path;

use sluice::engine::JobReport;
use sluice_workloads::overload::ScenarioResult;

use crate::error::CliError;
use crate::scenario;

/// Renders a scenario result, a list of them, or an engine job report.
pub fn render(file: &Path) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file).map_err(|source| CliError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    if let Ok(r) = serde_json::from_str::<ScenarioResult>(&text) {
        scenario::render(std::slice::from_ref(&r));
        return Ok(());
    }
    if let Ok(rs) = serde_json::from_str::<Vec<ScenarioResult>>(&text) {
        scenario::render(&rs);
        return Ok(());
    }
    match serde_json::from_str::<JobReport>(&text) {
        Ok(r) => {
            outln!("{r}");
            Ok(())
        }
        Err(e) => Err(CliError::Usage(format!(
            "{} is not a Sluice report ({e}); write one with `sluice run w1 --json FILE` or `sluice bench overload --json FILE`",
            file.display()
        ))),
    }
}
