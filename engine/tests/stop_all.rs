//! A process-wide stop reaches every running job. A file of its own: `cargo test` runs a
//! file's tests as threads of one process, and this stop would reach their jobs too.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use sluice_engine::{JobStatus, Pipeline};

#[test]
fn stop_all_jobs_stops_every_running_job_of_the_process() {
    let jobs: Vec<_> = (0..2)
        .map(|i| {
            let p = Pipeline::new(format!("everyone-{i}")).batch_size(100);
            p.source("forever", 1, |_| Forever(0))
                .new_chain()
                .sink("collect", |_| Collect(Arc::new(Mutex::new(Vec::new()))));
            p.run().expect("valid")
        })
        .collect();
    let stopped = sluice_engine::shutdown::stop_all_jobs(Duration::from_secs(10));
    let names: Vec<&str> = stopped.iter().map(|(n, _)| n.as_str()).collect();
    for i in 0..2 {
        assert!(
            names.contains(&format!("everyone-{i}").as_str()),
            "{names:?}"
        );
    }
    for job in jobs {
        let r = job.wait().expect("balanced");
        assert_eq!(r.status, JobStatus::Stopped);
    }
}
