//! Every example runs in a short mode and prints what its header promises, so an example
//! cannot rot. Each test builds its example first (`cargo build --example`, a no-op when it
//! is fresh) so it never runs a stale binary.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

/// Runs `examples/<name>.rs` with `args` and returns the last line it printed that starts with
/// `<name>:` (the summary), after checking it succeeded.
fn run(name: &str, args: &[&str]) -> Vec<String> {
    let mut build = Command::new(env!("CARGO"));
    build.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "-p",
        "sluice",
        "--example",
        name,
    ]);
    if cfg!(not(feature = "kafka")) {
        build.arg("--no-default-features");
    }
    let st = build.status().unwrap();
    assert!(st.success(), "cargo build --example {name} failed");
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/examples-<hash> -> target/<profile>/examples/<name>
    let dir: PathBuf = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples");
    let bin = dir.join(name);
    let out = Command::new(&bin).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{name} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{name}:")))
        .map(str::to_string)
        .collect();
    assert!(!lines.is_empty(), "{name} printed no summary:\n{stdout}");
    lines
}

/// The number before `word` in `line` (`"... 70000 of ..."`, `number_before(l, " of")`).
fn number_before(line: &str, word: &str) -> u64 {
    let i = line
        .find(word)
        .unwrap_or_else(|| panic!("`{word}` in {line}"));
    let digits: String = line[..i]
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

#[test]
fn hello() {
    let l = &run("hello", &["--records", "100000"])[0];
    assert_eq!(
        l,
        "hello: 70000 of 100000 records delivered, 30000 filtered, ledger balanced"
    );
}

#[test]
fn payments_drops_nothing_and_dead_letters_the_declined_cards() {
    let l = &run("payments", &["--payments", "2000"])[0];
    // Cards are i * 7919 % 10000; those ending in 13 are declined: 20 of 2000.
    assert_eq!(number_before(l, " offered"), 2000, "{l}");
    assert_eq!(number_before(l, " charged"), 1980, "{l}");
    assert_eq!(number_before(l, " dead-lettered (card declined"), 20, "{l}");
    assert_eq!(number_before(l, " dropped"), 0, "{l}");
    assert!(number_before(l, " calls retried") > 0, "{l}");
}

#[test]
fn indexing_defer_indexes_every_page() {
    let l = &run("indexing_defer", &["--pages", "6000"])[0];
    assert_eq!(number_before(l, " pages waited"), 1200, "{l}");
    assert_eq!(number_before(l, " pages, deferred"), 4800, "{l}");
    assert!(l.ends_with("dropped 0"), "{l}");
}

#[test]
fn herd_accounts_for_every_login_and_caps_the_database() {
    let l = &run("herd", &["--seconds", "1"])[0];
    let total = number_before(l, " logins");
    let parts: u64 = [
        ", 429",
        ", fallback",
        ", failed",
        ", expired",
        "; the database",
    ]
    .iter()
    .map(|w| number_before(l, w))
    .sum();
    assert_eq!(parts, total, "{l}");
    assert!(number_before(l, " calls at once") <= 16, "{l}");
    assert!(number_before(l, ", 429") > 0, "{l}");
}

#[test]
fn custom_io_copies_every_line_and_names_the_failing_source() {
    let lines = run("custom_io", &["--lines", "5000"]);
    assert_eq!(
        number_before(&lines[0], " lines, wrote"),
        5000,
        "{}",
        lines[0]
    );
    assert_eq!(number_before(&lines[0], " to "), 5000, "{}", lines[0]);
    assert!(
        lines[1].starts_with("custom_io: source `lines` failed (permanent): cannot open"),
        "{}",
        lines[1]
    );
}

#[cfg(feature = "kafka")]
#[test]
fn telemetry_kafka_sheds_low_classes_only_and_routes_by_class() {
    let l = &run("telemetry_kafka", &["--logs", "20000"])[0];
    assert_eq!(number_before(l, " malformed"), 200, "{l}");
    assert!(l.contains("warn 0%, error 0%"), "{l}");
    // warn + error: 10% of the lines, less the 200 malformed ones (all in the error slots).
    assert_eq!(number_before(l, ", to bulk"), 1800, "{l}");
    assert!(l.ends_with("ledger balanced"), "{l}");
}

#[cfg(all(feature = "kafka", feature = "arrow"))]
#[test]
fn telemetry_arrow_sheds_rows_by_level_and_the_parquet_files_hold_what_was_delivered() {
    let l = &run("telemetry_arrow", &["--logs", "20000"])[0];
    assert_eq!(number_before(l, " malformed"), 200, "{l}");
    assert!(l.contains("warn 0%, error 0%"), "{l}");
    // Every warn and error row is in the files: 8% and 2% of the lines, less the 200
    // malformed ones (all in the error slots).
    assert_eq!(number_before(l, " rows; shed"), 200, "{l}");
    assert!(l.contains("warn 1600, error 200 rows"), "{l}");
    assert!(l.contains(" = rows in the files"), "{l}");
    assert!(l.ends_with("; balanced"), "{l}");
}
