//! A build without the `kafka` feature: a scenario that asks for a Kafka feed fails with a
//! clear error before anything runs. The type has no values, so the rest is unreachable.

use std::sync::Arc;

use sluice_engine::{Pipeline, Stream, CLASSES};

use super::scenario::KafkaFeed;
use super::schedule::{Event, Schedule};

/// No Kafka in this build.
pub(super) enum KafkaRun {}

impl KafkaRun {
    /// Always fails: this build has no Kafka support.
    pub fn connect(_feed: &KafkaFeed) -> Result<Self, Box<dyn std::error::Error>> {
        Err("this build has no Kafka support: rebuild with the `kafka` feature".into())
    }

    pub fn source(
        &self,
        _p: &Pipeline,
        _feed: &KafkaFeed,
        _nonce: u64,
    ) -> Result<Stream<Event>, Box<dyn std::error::Error>> {
        match *self {}
    }

    pub fn start(
        &mut self,
        _feed: &KafkaFeed,
        _schedule: Arc<Schedule>,
        _cumulative: [f64; CLASSES],
        _offset_ns: u64,
        _nonce: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        match *self {}
    }

    pub fn produced(&self) -> Option<u64> {
        match *self {}
    }

    pub fn producer_done(&self) -> bool {
        match *self {}
    }

    pub fn finish(&mut self) -> Result<u64, Box<dyn std::error::Error>> {
        match *self {}
    }
}
