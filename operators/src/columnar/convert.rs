//! Typed rows to record batches and back (through serde and JSON).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use sluice_engine::Operator;

use super::types::{DeadLetterFn, FailedRow};
use crate::Failed;

/// Rows to one batch per input batch; rows that do not fit go to the dead-letter function.
pub(super) struct ToBatches<T> {
    pub schema: SchemaRef,
    pub dead_letter: DeadLetterFn<Failed<T, String>>,
    pub dead: u64,
}

impl<T: serde::Serialize + Send + 'static> Operator<T, RecordBatch> for ToBatches<T> {
    fn process(&mut self, input: Vec<T>) -> Vec<RecordBatch> {
        if let Ok(b) = encode(&self.schema, &input) {
            return b.into_iter().collect();
        }
        // Some row does not fit: one by one, to name it; the good ones still make a batch.
        let mut good = Vec::with_capacity(input.len());
        for r in input {
            match encode(&self.schema, std::slice::from_ref(&r)) {
                Ok(_) => good.push(r),
                Err(e) => self.reject(r, e.to_string()),
            }
        }
        match encode(&self.schema, &good) {
            Ok(b) => b.into_iter().collect(),
            Err(e) => {
                // Rows that fit alone but not together: each fails with the reason.
                let reason = e.to_string();
                for r in good {
                    self.reject(r, reason.clone());
                }
                Vec::new()
            }
        }
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }
}

impl<T> ToBatches<T> {
    fn reject(&mut self, record: T, error: String) {
        self.dead += 1;
        (self.dead_letter)(Failed { record, error });
    }
}

fn encode<T: serde::Serialize>(
    schema: &SchemaRef,
    rows: &[T],
) -> Result<Option<RecordBatch>, ArrowError> {
    let mut d = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()?;
    d.serialize(rows)?;
    d.flush()
}

/// Batches to typed rows; rows that do not deserialize go to the dead-letter function.
pub(super) struct ToRows<T> {
    pub dead_letter: DeadLetterFn<FailedRow>,
    pub dead: u64,
    pub _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: serde::de::DeserializeOwned + Send + 'static> Operator<RecordBatch, T> for ToRows<T> {
    fn process(&mut self, input: Vec<RecordBatch>) -> Vec<T> {
        let mut out = Vec::with_capacity(input.iter().map(RecordBatch::num_rows).sum());
        for b in &input {
            for r in batch_to_rows::<T>(b) {
                match r {
                    Ok(t) => out.push(t),
                    Err(f) => {
                        self.dead += 1;
                        (self.dead_letter)(f);
                    }
                }
            }
        }
        out
    }

    fn take_dead_lettered(&mut self) -> u64 {
        std::mem::take(&mut self.dead)
    }
}

/// Each row of `b` as a `T`, or the reason it is not one.
fn batch_to_rows<T: serde::de::DeserializeOwned>(b: &RecordBatch) -> Vec<Result<T, FailedRow>> {
    let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
    let written = w.write(b).and_then(|()| w.finish());
    if let Err(e) = written {
        // The batch does not encode: every row fails with the reason.
        return (0..b.num_rows())
            .map(|_| {
                Err(FailedRow {
                    json: String::new(),
                    error: e.to_string(),
                })
            })
            .collect();
    }
    let buf = w.into_inner();
    buf.split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            serde_json::from_slice::<T>(line).map_err(|e| FailedRow {
                json: String::from_utf8_lossy(line).into_owned(),
                error: e.to_string(),
            })
        })
        .collect()
}
