//! Query answers as bytes, batch by batch: Arrow IPC stream, JSON (an array of row
//! objects), NDJSON, CSV (with a header) or Parquet. Each batch becomes the bytes that can be
//! sent at once, so a large answer never sits whole in memory.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json;
use datafusion::parquet::arrow::ArrowWriter;

use crate::limits::ANSWER_ROW_GROUP_BYTES;

/// The formats of a query answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerFormat {
    ArrowStream,
    Json,
    NdJson,
    Csv,
    Parquet,
}

impl AnswerFormat {
    pub const ALL: [AnswerFormat; 5] = [
        AnswerFormat::ArrowStream,
        AnswerFormat::Json,
        AnswerFormat::NdJson,
        AnswerFormat::Csv,
        AnswerFormat::Parquet,
    ];

    pub fn media_type(self) -> &'static str {
        match self {
            AnswerFormat::ArrowStream => "application/vnd.apache.arrow.stream",
            AnswerFormat::Json => "application/json",
            AnswerFormat::NdJson => "application/x-ndjson",
            AnswerFormat::Csv => "text/csv",
            AnswerFormat::Parquet => "application/vnd.apache.parquet",
        }
    }

    pub fn from_media_type(media: &str) -> Option<AnswerFormat> {
        let media = media.trim().to_ascii_lowercase();
        AnswerFormat::ALL
            .into_iter()
            .find(|f| f.media_type() == media)
    }
}

/// Turns batches into bytes in one format.
pub struct Encoder {
    inner: Inner,
}

enum Inner {
    Arrow(StreamWriter<Vec<u8>>),
    Json { rows: u64 },
    NdJson,
    Csv { header: bool, schema: SchemaRef },
    Parquet(Option<ArrowWriter<Vec<u8>>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    pub fn new(format: AnswerFormat, schema: &SchemaRef) -> Result<Encoder, ArrowError> {
        let inner = match format {
            AnswerFormat::ArrowStream => Inner::Arrow(StreamWriter::try_new(Vec::new(), schema)?),
            AnswerFormat::Json => Inner::Json { rows: 0 },
            AnswerFormat::NdJson => Inner::NdJson,
            AnswerFormat::Csv => Inner::Csv {
                header: true,
                schema: Arc::clone(schema),
            },
            AnswerFormat::Parquet => Inner::Parquet(Some(
                ArrowWriter::try_new(Vec::new(), Arc::clone(schema), None)
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?,
            )),
        };
        Ok(Encoder { inner })
    }

    /// The bytes before the first batch (the Arrow schema message, `[`).
    pub fn start(&mut self) -> Result<Bytes, ArrowError> {
        Ok(match &mut self.inner {
            Inner::Arrow(w) => Bytes::from(std::mem::take(w.get_mut())),
            Inner::Json { .. } => Bytes::from_static(b"["),
            _ => Bytes::new(),
        })
    }

    /// The bytes of one batch.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        match &mut self.inner {
            Inner::Arrow(w) => {
                w.write(batch)?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
            Inner::Json { rows, .. } => {
                let mut lines = Vec::new();
                {
                    let mut w = json::WriterBuilder::new()
                        .with_explicit_nulls(true)
                        .build::<_, json::writer::LineDelimited>(&mut lines);
                    w.write(batch)?;
                    w.finish()?;
                }
                // One object per line (strings escape their newlines): join them with
                // commas into the array.
                let mut out = Vec::with_capacity(lines.len() + 1);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if *rows > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(line);
                    *rows += 1;
                }
                Ok(Bytes::from(out))
            }
            Inner::NdJson => {
                let mut out = Vec::new();
                {
                    let mut w = json::WriterBuilder::new()
                        .with_explicit_nulls(true)
                        .build::<_, json::writer::LineDelimited>(&mut out);
                    w.write(batch)?;
                    w.finish()?;
                }
                Ok(Bytes::from(out))
            }
            Inner::Csv { header, .. } => {
                let mut out = Vec::new();
                {
                    let mut w = csv::WriterBuilder::new()
                        .with_header(*header)
                        .build(&mut out);
                    w.write(batch)?;
                }
                *header = false;
                Ok(Bytes::from(out))
            }
            Inner::Parquet(w) => {
                let w = w.as_mut().expect("a parquet writer until finish");
                w.write(batch)
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                if w.in_progress_size() >= ANSWER_ROW_GROUP_BYTES {
                    w.flush()
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                }
                Ok(Bytes::from(std::mem::take(w.inner_mut())))
            }
        }
    }

    /// The bytes after the last batch (the Arrow end marker, `]`, the Parquet footer).
    pub fn finish(&mut self) -> Result<Bytes, ArrowError> {
        match &mut self.inner {
            Inner::Arrow(w) => {
                w.finish()?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
            Inner::Json { .. } => Ok(Bytes::from_static(b"]")),
            // An empty answer still has its header.
            Inner::Csv {
                header: true,
                schema,
            } => {
                let empty = RecordBatch::new_empty(Arc::clone(schema));
                self.batch(&empty)
            }
            Inner::NdJson | Inner::Csv { .. } => Ok(Bytes::new()),
            Inner::Parquet(w) => {
                let w = w.take().expect("finish runs once");
                let out = w
                    .into_inner()
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                Ok(Bytes::from(out))
            }
        }
    }
}
