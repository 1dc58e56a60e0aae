//! Golden hashes: the canonical encoding of every object kind, and the chunking rule of
//! the index, pinned so that an innocent refactor cannot change a single object id. A
//! change here is a storage format change: it needs a new `FORMAT_VERSION`, never an
//! update of these snapshots.

use std::collections::BTreeMap;

use bytes::Bytes;
use expect_test::expect;
use floe_commits::tree::{self, NewNodes, Node};
use floe_commits::*;

fn table() -> Content {
    Content {
        id: ContentId::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0001),
        payload: Payload::IcebergTable(TablePayload {
            metadata_location: "file:///warehouse/ns/t-1/metadata/00001.metadata.json".to_owned(),
            table_uuid: [7; 16],
            snapshot_id: 3_051_729_675_574_597_004,
            schema_id: 0,
            spec_id: 0,
            sort_order_id: 0,
        }),
    }
}

#[test]
fn content_hashes_are_pinned() {
    let ns = Content::namespace(
        ContentId::from_u128(1),
        BTreeMap::from([
            ("owner".to_owned(), "data-eng".to_owned()),
            ("location".to_owned(), "s3://b/ns".to_owned()),
        ]),
    );
    expect!["509d7b6278faa3dfd129a05b736924d76ea2b3baa4432ea6e14ee8318673ffea"]
        .assert_eq(&ns.hash().to_string());
    expect!["010301920000000070008000000000000001023566696c653a2f2f2f77617265686f7573652f6e732f742d312f6d657461646174612f30303030312e6d657461646174612e6a736f6e070707070707070707070707070707072a59ebf89f24558c000000000000000000000000"].assert_eq(&hex::encode(table().encode()));
    expect!["d89a431a55033650ac53c25b5adf437bafa3b764d45044b84bf2f8699c9e3f7f"]
        .assert_eq(&table().hash().to_string());
    let view = Content {
        id: ContentId::from_u128(2),
        payload: Payload::IcebergView(ViewPayload {
            metadata_location: "file:///warehouse/ns/v-2/metadata/00001.metadata.json".to_owned(),
            view_uuid: [9; 16],
            version_id: 1,
            schema_id: 0,
        }),
    };
    expect!["aa53f2e007cbe3bcb4ba1d2c2733791b9f716a241ce9e725718becd70a4834af"]
        .assert_eq(&view.hash().to_string());
}

#[test]
fn commit_hashes_are_pinned() {
    expect!["f8c8d3bf12d43a5a2689990994ccafd6f7e266a04d356fd3a553994cf2a45d8b"]
        .assert_eq(&Store::root_commit().to_string());
    let commit = Commit {
        parents: [Store::root_commit()].into_iter().collect(),
        key_index: Some(Hash::of(b"key index")),
        id_index: Some(Hash::of(b"id index")),
        author: "alice".to_owned(),
        committer: "floe".to_owned(),
        message: "load ns.t".to_owned(),
        authored_at_ms: 1_764_000_000_000,
        properties: BTreeMap::from([("floe.run.id".to_owned(), "r1".to_owned())]),
        generation: 2,
    };
    expect!["dc6f4c47deaae82048e7e8ab1087ebbcf503188d84a4fef7328b29bf4e15d4da"]
        .assert_eq(&Hash::of(&commit.encode()).to_string());
    assert_eq!(Commit::decode(&commit.encode()).unwrap(), commit);
}

#[test]
fn index_roots_are_pinned() {
    let table_ref = table().content_ref().to_bytes();
    let leaf = Node::build(
        0,
        [
            (&b"ns"[..], &table_ref[..]),
            (&b"ns\0t"[..], &table_ref[..]),
        ],
    );
    expect!["fb4059b8ab7eccad99d1367aaf3bf2dc75bdd9b970e510e30ab958d0bc4d1b4b"]
        .assert_eq(&Hash::of(leaf.raw()).to_string());
    // 10,000 keys pin the cut rule: a change to the threshold or the hash moves this root.
    let entries: Vec<tree::Entry> = (0..10_000u32)
        .map(|i| {
            (
                Bytes::from(format!("ns\0t{i:05}").into_bytes()),
                Bytes::from(vec![(i % 251) as u8; 49]),
            )
        })
        .collect();
    let mut out = NewNodes::default();
    let root = tree::build(entries, &mut out).unwrap().unwrap();
    expect!["c5b8b08d653600320a1530fec10532cc4368f5c2251fed8f87d585bc9082b24b"]
        .assert_eq(&root.to_string());
    expect!["217"].assert_eq(&out.len().to_string());
}
