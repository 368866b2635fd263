//! Kafka client configuration: brokers, group, and pass-through librdkafka properties, with
//! properties that load code or run commands refused and secrets redacted.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

/// Properties refused by [`KafkaConfig::set`] because they make librdkafka load code or run
/// commands: the code paths themselves, OpenSSL providers, and the Kerberos values that
/// librdkafka substitutes into the `kinit` command line. [`KafkaConfig::set_trusted`] sets
/// them when the value comes from the program, not from its input.
pub const REFUSED_PROPERTIES: &[&str] = &[
    "plugin.library.paths",
    "sasl.kerberos.kinit.cmd",
    "ssl.engine.location",
    "oauthbearer.method.cmd",
    "ssl.providers",
    "sasl.kerberos.principal",
    "sasl.kerberos.keytab",
    "sasl.kerberos.service.name",
];

/// Property names whose values are secrets (redacted in `Debug` and reports).
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.ends_with(".key") || k.contains("sasl.jaas")
}

/// A configuration problem, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaConfigError {
    /// A property that loads code or runs commands.
    #[error("kafka property `{0}` is refused: it makes the client load code or run commands")]
    Refused(String),
    /// Brokers missing.
    #[error(
        "no Kafka brokers given: pass --brokers host:port (or omit it for the embedded cluster)"
    )]
    NoBrokers,
    /// A property without `=`.
    #[error("kafka property `{0}` is not key=value")]
    Malformed(String),
    /// librdkafka refused the configuration (an unknown property, a value of the wrong type).
    #[error("invalid Kafka configuration: {0}")]
    Invalid(#[source] rdkafka::error::KafkaError),
}

/// Brokers, consumer group and extra librdkafka properties.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `group.id` (sources).
    pub group: String,
    properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Brokers and group.
    ///
    /// # Errors
    /// [`KafkaConfigError::NoBrokers`] for an empty broker list.
    pub fn new(
        brokers: impl Into<String>,
        group: impl Into<String>,
    ) -> Result<Self, KafkaConfigError> {
        let brokers = brokers.into();
        if brokers.trim().is_empty() {
            return Err(KafkaConfigError::NoBrokers);
        }
        Ok(KafkaConfig {
            brokers,
            group: group.into(),
            properties: BTreeMap::new(),
        })
    }

    /// Adds a librdkafka property.
    ///
    /// # Errors
    /// [`KafkaConfigError::Refused`] for properties that load code or run commands.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self, KafkaConfigError> {
        let k = key.trim();
        if REFUSED_PROPERTIES.iter().any(|r| r.eq_ignore_ascii_case(k)) {
            return Err(KafkaConfigError::Refused(k.to_string()));
        }
        self.properties.insert(k.to_string(), value.to_string());
        Ok(self)
    }

    /// Adds a property without the [`REFUSED_PROPERTIES`] check: for values the program
    /// itself chose, never for values from its input (a command line, a file).
    pub fn set_trusted(mut self, key: &str, value: &str) -> Self {
        self.properties
            .insert(key.trim().to_string(), value.to_string());
        self
    }

    /// Checks the configuration with librdkafka itself, before any job uses it: unknown
    /// properties and malformed values are found here, not in a task thread.
    ///
    /// # Errors
    /// [`KafkaConfigError::Invalid`] with librdkafka's reason.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        // librdkafka checks each property as it is set: no client is created.
        self.client_config(&[])
            .create_native_config()
            .map(drop)
            .map_err(KafkaConfigError::Invalid)
    }

    /// Adds a `key=value` property.
    ///
    /// # Errors
    /// As [`KafkaConfig::set`], or [`KafkaConfigError::Malformed`].
    pub fn set_pair(self, pair: &str) -> Result<Self, KafkaConfigError> {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| KafkaConfigError::Malformed(pair.to_string()))?;
        self.set(k, v)
    }

    /// The librdkafka configuration: brokers, then `defaults` (which the user's properties
    /// override).
    ///
    /// librdkafka's warnings and errors go to stderr (`kafka [LEVEL] FACILITY: message`); with
    /// the environment variable `SLUICE_KAFKA_LOG` set, its debug output too, and a value
    /// naming librdkafka debug contexts (`SLUICE_KAFKA_LOG=cgrp,fetch`, or `all`) turns them
    /// on for every client (the `debug` property picks them per client).
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set_log_level(if debug_log() {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Warning
        });
        // `SLUICE_KAFKA_LOG=cgrp,fetch` also turns on those debug contexts.
        if let Some(contexts) = std::env::var("SLUICE_KAFKA_LOG")
            .ok()
            .filter(|v| v.chars().any(|ch| ch.is_ascii_alphabetic()))
        {
            c.set("debug", contexts);
        }
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

fn debug_log() -> bool {
    std::env::var_os("SLUICE_KAFKA_LOG").is_some()
}

/// Writes one librdkafka log line to stderr (the clients' contexts route their logs here).
pub(crate) fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Warning as i32) || debug_log() {
        eprintln!("kafka [{level:?}] {fac}: {message}");
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("properties", &props)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_finds_unknown_properties_and_bad_values_before_a_job_runs() {
        let ok = KafkaConfig::new("127.0.0.1:9", "g")
            .and_then(|k| k.set("linger.ms", "5"))
            .unwrap();
        assert!(ok.validate().is_ok());
        for (k, v) in [("linger.ms", "banana"), ("no.such.property", "1")] {
            let bad = KafkaConfig::new("127.0.0.1:9", "g")
                .and_then(|c| c.set(k, v))
                .unwrap();
            let e = bad.validate().unwrap_err().to_string();
            assert!(
                e.contains(k) || e.contains("Invalid") || e.contains("No such"),
                "{k}: {e}"
            );
        }
        for k in [
            "ssl.providers",
            "sasl.kerberos.principal",
            "sasl.kerberos.keytab",
        ] {
            assert!(matches!(
                KafkaConfig::new("b", "g").unwrap().set(k, "x"),
                Err(KafkaConfigError::Refused(_))
            ));
        }
    }

    #[test]
    fn refuses_code_loading_properties_and_redacts_secrets() {
        let c = KafkaConfig::new("127.0.0.1:9092", "g").unwrap();
        assert_eq!(
            c.clone()
                .set("plugin.library.paths", "/tmp/evil.so")
                .unwrap_err(),
            KafkaConfigError::Refused("plugin.library.paths".into())
        );
        assert!(c
            .clone()
            .set_pair("sasl.kerberos.kinit.cmd=rm -rf /")
            .is_err());
        let c = c
            .set("sasl.password", "hunter2")
            .unwrap()
            .set("linger.ms", "5")
            .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && dbg.contains("***") && dbg.contains("linger.ms"));
        assert_eq!(
            KafkaConfig::new(" ", "g").unwrap_err(),
            KafkaConfigError::NoBrokers
        );
        assert!(matches!(
            c.set_pair("novalue"),
            Err(KafkaConfigError::Malformed(_))
        ));
    }
}
