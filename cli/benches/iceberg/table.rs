//! A table of the Iceberg bench as a client makes it: created over the REST API, then one
//! `add-snapshot` + `set-snapshot-ref` per commit (its manifest list written first, as a
//! client does), every answer checked to show the snapshot just added.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::loadgen::Serial;
use crate::support::{Client, encode, head};

/// The Iceberg REST prefix of the branch most tables live on.
pub const PREFIX: &str = "/iceberg/v1/main";

/// A table of the bench, and what its next commit must say.
pub struct Table {
    /// The branch (the Iceberg REST prefix) the table lives on.
    pub branch: String,
    pub name: String,
    /// The table's location (`file://...`).
    pub location: String,
    /// Snapshots so far; every commit adds one, so also the last sequence number and the
    /// current snapshot id.
    pub snapshots: i64,
    pub metadata_location: String,
    last_ts: i64,
}

/// The bytes of an empty Iceberg v2 manifest list (written once, through the iceberg
/// crate's writer, into a scratch folder).
fn empty_manifest_list() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a scratch folder");
        let root = std::fs::canonicalize(dir.path()).expect("a canonical scratch folder");
        let io = iceberg::io::FileIOBuilder::new(Arc::new(floe_catalog::WarehouseStorageFactory))
            .with_props([(
                floe_catalog::WAREHOUSE_ROOT_PROP.to_owned(),
                root.display().to_string(),
            )])
            .build();
        let path = format!("file://{}/list.avro", root.display());
        tokio::runtime::Runtime::new()
            .expect("a runtime")
            .block_on(async {
                let out = io.new_output(&path)?.writer().await?;
                let mut w = iceberg::spec::ManifestListWriter::v2(out, 1, None, 1);
                w.add_manifests(std::iter::empty())?;
                w.close().await
            })
            .expect("an empty manifest list");
        std::fs::read(root.join("list.avro")).expect("the manifest list reads back")
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64
}

impl Table {
    pub fn path(&self) -> String {
        format!(
            "/iceberg/v1/{}/namespaces/db/tables/{}",
            self.branch, self.name
        )
    }

    pub fn create(c: &Client, name: &str) -> Table {
        Table::create_on(c, "main", name)
    }

    pub fn create_on(c: &Client, branch: &str, name: &str) -> Table {
        let body = format!(
            r#"{{"name":"{name}","schema":{{"type":"struct","schema-id":0,"fields":[{{"id":1,"name":"id","required":false,"type":"long"}}]}}}}"#
        );
        let text = c.post(
            &format!("/iceberg/v1/{branch}/namespaces/db/tables"),
            &body,
            200,
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("a LoadTableResult");
        let location = v["metadata"]["location"]
            .as_str()
            .unwrap_or_else(|| panic!("create {name}: no location in {text}"))
            .to_owned();
        let metadata_location = v["metadata-location"]
            .as_str()
            .unwrap_or_else(|| panic!("create {name}: no metadata-location in {text}"))
            .to_owned();
        assert_eq!(
            v["metadata"]["last-sequence-number"].as_i64(),
            Some(0),
            "create {name}: {text}"
        );
        Table {
            branch: branch.to_owned(),
            name: name.to_owned(),
            location,
            snapshots: 0,
            metadata_location,
            last_ts: 0,
        }
    }

    /// The body of the next commit: one appended snapshot, made the table's main. As a
    /// client does, the snapshot's manifest list is written first (the server reads it to
    /// check that the snapshot names only the table's own files); an empty one: the bench
    /// measures the catalog, not data.
    pub fn next_commit(&mut self) -> String {
        let id = self.snapshots + 1;
        let ts = now_ms().max(self.last_ts);
        self.last_ts = ts;
        let (current, parent) = if self.snapshots == 0 {
            ("null".to_owned(), String::new())
        } else {
            (
                self.snapshots.to_string(),
                format!(r#""parent-snapshot-id":{},"#, self.snapshots),
            )
        };
        let loc = &self.location;
        let list = format!("{loc}/metadata/snap-{id}.avro");
        std::fs::write(local(&list), empty_manifest_list())
            .expect("the bench writes the snapshot's manifest list");
        format!(
            r#"{{"requirements":[{{"type":"assert-ref-snapshot-id","ref":"main","snapshot-id":{current}}}],"updates":[{{"action":"add-snapshot","snapshot":{{"snapshot-id":{id},{parent}"sequence-number":{id},"timestamp-ms":{ts},"manifest-list":"{list}","summary":{{"operation":"append"}},"schema-id":0}}}},{{"action":"set-snapshot-ref","ref-name":"main","type":"branch","snapshot-id":{id}}}]}}"#
        )
    }

    /// Checks a commit's answer (a `CommitTableResponse` with the new snapshot current and a
    /// new metadata location) and moves on.
    pub fn accept(&mut self, text: &str) {
        let id = self.snapshots + 1;
        let location = metadata_location_of(text);
        assert!(
            has_number(text, "\"current-snapshot-id\":", id),
            "commit {id} to {}: the answer does not show snapshot {id} current: {}",
            self.name,
            head(text)
        );
        assert_ne!(
            location, self.metadata_location,
            "commit {id} to {}: the metadata location did not change",
            self.name
        );
        if id <= 2 || id % 1_000 == 0 {
            let v: serde_json::Value = serde_json::from_str(text).expect("a CommitTableResponse");
            let m = &v["metadata"];
            let snapshots = m["snapshots"].as_array().map(Vec::len);
            assert_eq!(snapshots, Some(id as usize), "{}", head(text));
            assert_eq!(
                m["last-sequence-number"].as_i64(),
                Some(id),
                "{}",
                head(text)
            );
            assert_eq!(
                m["current-snapshot-id"].as_i64(),
                Some(id),
                "{}",
                head(text)
            );
        }
        self.snapshots = id;
        self.metadata_location = location;
    }

    /// One commit through the async generator's connection.
    pub fn commit(&mut self, g: &mut Serial) {
        let body = self.next_commit();
        let text = g.post(&self.path(), &body, 200);
        self.accept(&text);
    }

    /// Bytes of the current metadata file.
    pub fn metadata_bytes(&self) -> u64 {
        std::fs::metadata(local(&self.metadata_location))
            .expect("the metadata file exists")
            .len()
    }

    /// A load's answer, checked to point at the current metadata: the bytes the trivial
    /// server answers in the same run, and the size every load of the table must have.
    pub fn load(&self, c: &Client) -> String {
        let text = c.get(&self.path(), 200);
        assert_eq!(
            metadata_location_of(&text),
            self.metadata_location,
            "loadTable {} answers another metadata file",
            self.name
        );
        text
    }
}

/// True when `text` holds `key` followed by exactly the number `n`.
fn has_number(text: &str, key: &str, n: i64) -> bool {
    let want = n.to_string();
    text.match_indices(key).any(|(at, _)| {
        let rest = &text[at + key.len()..];
        rest.starts_with(&want) && !rest[want.len()..].starts_with(|c: char| c.is_ascii_digit())
    })
}

pub fn metadata_location_of(text: &str) -> String {
    text.strip_prefix(r#"{"metadata-location":""#)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no metadata-location first in {}", head(text)))
        .to_owned()
}

pub fn local(location: &str) -> &str {
    location.strip_prefix("file://").unwrap_or(location)
}

/// Tables in `db`, listed a page of 1,000 at a time.
pub fn count_tables(c: &Client) -> u64 {
    let mut count = 0;
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("{PREFIX}/namespaces/db/tables?pageSize=1000&pageToken={t}"),
            None => format!("{PREFIX}/namespaces/db/tables?pageSize=1000"),
        };
        let v: serde_json::Value =
            serde_json::from_str(&c.get(&path, 200)).expect("a ListTablesResponse");
        count += v["identifiers"].as_array().expect("identifiers").len() as u64;
        match v["next-page-token"].as_str() {
            Some(t) => token = Some(encode(t)),
            None => return count,
        }
    }
}
