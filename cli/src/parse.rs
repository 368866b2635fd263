//! Value parsers for durations (`10s`, `250ms`, `1m`) and counts (`64k`, `2M`), with messages
//! that say what to write instead.

use std::time::Duration;

/// The longest duration accepted, a week.
const MAX_DURATION_S: f64 = 7.0 * 24.0 * 3600.0;
/// The largest count accepted.
const MAX_COUNT: u64 = 1_000_000_000_000;
/// The largest multiplier accepted.
const MAX_FACTOR: f64 = 1000.0;
/// The largest edge capacity accepted, in records: beyond it a bounded edge is a bound in
/// name only.
pub const MAX_CAPACITY: u64 = 100_000_000;

/// Parses an edge capacity: a count of at most [`MAX_CAPACITY`].
pub fn capacity(s: &str) -> Result<u64, String> {
    let n = count(s)?;
    if n > MAX_CAPACITY {
        return Err(format!(
            "`{s}` records is not a bound: an edge holds at most 100M records (use the `unbounded` policy of `bench overload` to see what no bound does)"
        ));
    }
    Ok(n)
}

/// Parses `250ms`, `10s`, `1.5s`, `2m`; a bare number is seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = split_unit(t);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: write e.g. 250ms, 10s or 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "" | "s" => v,
        "m" | "min" => v * 60.0,
        "us" => v / 1e6,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`: use ms, s or m")),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("`{s}` must be a positive duration"));
    }
    if secs < 1e-3 {
        return Err(format!("`{s}` is below a millisecond: give at least 1ms"));
    }
    if secs > MAX_DURATION_S {
        return Err(format!("`{s}` is longer than a week: give at most 10080m"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `512`, `64k`, `2M`, `1.5k` (k = 1,000, M = 1,000,000); must be positive.
pub fn count(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, unit) = split_unit(t);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a count: write e.g. 512, 64k or 2M"))?;
    let m = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "m" | "M" => 1e6,
        "g" | "G" => 1e9,
        _ => return Err(format!("unknown suffix `{unit}` in `{s}`: use k, M or G")),
    };
    let n = v * m;
    if !n.is_finite() || n < 1.0 {
        return Err(format!("`{s}` must be at least 1"));
    }
    if n > MAX_COUNT as f64 {
        return Err(format!("`{s}` is too large: at most 1e12"));
    }
    Ok(n as u64)
}

/// Parses a positive multiplier such as `10` or `2.5`.
pub fn factor(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('x')
        .parse()
        .map_err(|_| format!("`{s}` is not a number: write e.g. 10 or 2.5"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("`{s}` must be positive"));
    }
    if v > MAX_FACTOR {
        return Err(format!("`{s}` is too large: at most {MAX_FACTOR}"));
    }
    Ok(v)
}

fn split_unit(t: &str) -> (&str, &str) {
    let i = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    (&t[..i], t[i..].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("3"), Ok(Duration::from_secs(3)));
        assert!(duration("0s").is_err());
        assert!(duration("ten").unwrap_err().contains("250ms"));
        assert!(duration("5h").unwrap_err().contains("unit"));
        assert!(duration("0.0000001us").unwrap_err().contains("millisecond"));
        assert!(duration("99999999999999999999999m")
            .unwrap_err()
            .contains("week"));
    }

    #[test]
    fn counts() {
        assert_eq!(count("64k"), Ok(64_000));
        assert_eq!(count("2M"), Ok(2_000_000));
        assert_eq!(count("512"), Ok(512));
        assert!(count("0").is_err());
        assert!(count("lots").is_err());
        assert!(count("99999999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(capacity("99999999999999999999999").is_err());
        assert!(capacity("200M").unwrap_err().contains("not a bound"));
        assert_eq!(capacity("4k"), Ok(4_000));
        assert!(factor("1e9").unwrap_err().contains("at most 1000"));
        assert_eq!(factor("10"), Ok(10.0));
    }

    proptest::proptest! {
        /// Any input: an answer or a message, never a panic, and what is accepted is in range.
        #[test]
        fn parsers_never_panic_and_stay_in_bounds(s in "\\PC{0,24}") {
            if let Ok(d) = duration(&s) {
                proptest::prop_assert!(d >= Duration::from_millis(1));
                proptest::prop_assert!(d.as_secs_f64() <= MAX_DURATION_S);
            }
            if let Ok(n) = count(&s) {
                proptest::prop_assert!((1..=MAX_COUNT).contains(&n));
            }
            if let Ok(c) = capacity(&s) {
                proptest::prop_assert!((1..=MAX_CAPACITY).contains(&c));
            }
            if let Ok(f) = factor(&s) {
                proptest::prop_assert!(f > 0.0 && f <= MAX_FACTOR);
            }
        }

        /// Numbers with units, the shapes people type.
        #[test]
        fn numbers_with_units(v in 0.0f64..1e30, unit in "(|ms|s|m|us|k|M|G|x)") {
            let s = format!("{v}{unit}");
            let _ = (duration(&s), count(&s), capacity(&s), factor(&s));
        }
    }
}
