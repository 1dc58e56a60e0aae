//! The CPU steps of a table commit that floe serve runs, timed apart in the bench on a
//! table's current metadata (iceberg 0.10.1 and serde_json): where a commit's own CPU goes,
//! which the server cannot show from outside.

use std::time::{Duration, Instant};

use crate::support::{Samples, us};
use crate::table::{Table, local};

/// The CPU steps of a table commit the server runs (`Catalog::apply` and
/// `write_metadata` in catalog/src/tables.rs, `load_result` in rest-api/src/iceberg.rs),
/// timed apart in this process on a table's current metadata: medians.
pub struct Steps {
    /// Bytes of the metadata the steps started from, and of the new one.
    bytes: usize,
    new_bytes: usize,
    /// Parse the metadata file (the server does it only when its cache misses).
    parse: Duration,
    /// `metadata.clone().into_builder(..)`.
    clone_builder: Duration,
    /// The updates (add-snapshot, set-snapshot-ref) applied to the builder.
    apply: Duration,
    /// `builder.build()`.
    build: Duration,
    /// `serde_json::to_vec` of the new metadata (what is written).
    serialize: Duration,
    /// `metadata.clone()` (the server caches a copy of what it wrote).
    clone_cache: Duration,
    /// The answer: the new metadata spliced into a `CommitTableResponse` string.
    answer: Duration,
}

pub fn commit_steps(t: &mut Table, rounds: usize) -> Steps {
    use iceberg::TableUpdate;
    use iceberg::spec::TableMetadata;
    let bytes = std::fs::read(local(&t.metadata_location)).expect("the metadata file");
    let body: serde_json::Value = serde_json::from_str(&t.next_commit()).expect("a commit body");
    let updates: Vec<TableUpdate> =
        serde_json::from_value(body["updates"].clone()).expect("the updates");
    let mut times: [Vec<Duration>; 7] = Default::default();
    let mut new_bytes = 0;
    for _ in 0..rounds {
        let mut lap = Instant::now();
        let mut mark = |i: usize, times: &mut [Vec<Duration>; 7]| {
            times[i].push(lap.elapsed());
            lap = Instant::now();
        };
        let metadata: TableMetadata = serde_json::from_slice(&bytes).expect("metadata");
        mark(0, &mut times);
        let mut builder = metadata
            .clone()
            .into_builder(Some(t.metadata_location.clone()));
        mark(1, &mut times);
        for u in &updates {
            builder = u.clone().apply(builder).expect("the update applies");
        }
        mark(2, &mut times);
        let new = builder.build().expect("the metadata builds").metadata;
        mark(3, &mut times);
        let json = serde_json::to_vec(&new).expect("the metadata serializes");
        mark(4, &mut times);
        let copy = new.clone();
        mark(5, &mut times);
        let mut out = String::with_capacity(json.len() + 256);
        out.push_str(r#"{"metadata-location":"#);
        out.push_str(&serde_json::to_string(&t.metadata_location).expect("a string"));
        out.push_str(r#","metadata":"#);
        out.push_str(std::str::from_utf8(&json).expect("UTF-8"));
        out.push('}');
        mark(6, &mut times);
        new_bytes = json.len();
        drop((copy, out, metadata));
    }
    let [
        parse,
        clone_builder,
        apply,
        build,
        serialize,
        clone_cache,
        answer,
    ] = times.map(|v| Samples::new(v).p50());
    Steps {
        bytes: bytes.len(),
        new_bytes,
        parse,
        clone_builder,
        apply,
        build,
        serialize,
        clone_cache,
        answer,
    }
}

impl Steps {
    fn commit_work(&self) -> Duration {
        self.clone_builder
            + self.apply
            + self.build
            + self.serialize
            + self.clone_cache
            + self.answer
    }

    pub fn line(&self) -> String {
        format!(
            "{} B -> {} B: clone + into_builder {}, apply the updates {}, build {}, serialize {}, clone for the cache {}, the answer string {} = **{}** in all (not in a commit, a cache miss's parse: {})",
            self.bytes,
            self.new_bytes,
            us(self.clone_builder),
            us(self.apply),
            us(self.build),
            us(self.serialize),
            us(self.clone_cache),
            us(self.answer),
            us(self.commit_work()),
            us(self.parse)
        )
    }
}
