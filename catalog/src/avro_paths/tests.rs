//! The commit check's Avro reader against files real writers wrote and files crafted to
//! make it disagree with Java and PyIceberg, or to exhaust the server.

use apache_avro::Schema;
use apache_avro::types::Value;

use super::*;

/// The data file paths the iceberg crate's parser reads in a manifest.
fn full_parser_paths(manifest: &[u8]) -> Vec<String> {
    iceberg::spec::Manifest::parse_avro(manifest)
        .unwrap()
        .entries()
        .iter()
        .map(|e| e.file_path().to_owned())
        .collect()
}

#[test]
fn a_long_reads_as_avro_writes_it() {
    for v in [0i64, -1, 1, 63, -64, 64, 300, i64::MAX, i64::MIN] {
        let bytes = apache_avro::to_avro_datum(&Schema::Long, Value::Long(v)).unwrap();
        let mut r = bytes.as_slice();
        assert_eq!(long(&mut r), Some(v));
        assert!(r.is_empty());
    }
    assert_eq!(long(&mut &[0x80u8][..]), None, "a cut long");
}

/// A manifest and a manifest list as the iceberg crate writes them (as engines do):
/// read here, they name what the crate's own parser reads, and the cut or altered
/// ones go to that parser.
#[test]
fn paths_read_here_are_the_full_parsers_paths() {
    use iceberg::spec::{
        DataContentType, DataFileBuilder, DataFileFormat, ManifestList, ManifestListWriter,
        ManifestWriterBuilder, NestedField, PartitionSpec, PrimitiveType, Schema as IcebergSchema,
        Struct, Type,
    };

    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let io = iceberg::io::FileIOBuilder::new(Arc::new(crate::WarehouseStorageFactory))
        .with_props([(
            crate::WAREHOUSE_ROOT_PROP.to_owned(),
            root.display().to_string(),
        )])
        .build();
    let schema = Arc::new(
        IcebergSchema::builder()
            .with_fields([
                NestedField::optional(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            ])
            .build()
            .unwrap(),
    );
    let spec = PartitionSpec::unpartition_spec();
    let manifest_path = format!("file://{}/m0.avro", root.display());
    let list_path = format!("file://{}/snap-1.avro", root.display());
    let files: Vec<String> = (0..3)
        .map(|i| format!("file://{}/data/f{i}.parquet", root.display()))
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let out = io.new_output(&manifest_path).unwrap();
        let mut writer =
            ManifestWriterBuilder::new(out, Some(1), schema.clone(), spec.clone()).build_v2_data();
        for f in &files {
            let file = DataFileBuilder::default()
                .content(DataContentType::Data)
                .file_path(f.clone())
                .file_format(DataFileFormat::Parquet)
                .partition(Struct::empty())
                .record_count(10)
                .file_size_in_bytes(100)
                .partition_spec_id(0)
                .build()
                .unwrap();
            writer.add_file(file, 1).unwrap();
        }
        let manifest = writer.write_manifest_file().await.unwrap();
        let out = io.new_output(&list_path).unwrap();
        let mut list = ManifestListWriter::v2(out.writer().await.unwrap(), 1, None, 1);
        list.add_manifests([manifest].into_iter()).unwrap();
        list.close().await.unwrap();
    });
    let manifest = std::fs::read(root.join("m0.avro")).unwrap();
    let list = std::fs::read(root.join("snap-1.avro")).unwrap();
    let full = full_parser_paths(&manifest);
    assert_eq!(full, files);
    assert_eq!(
        manifest_data_paths(&manifest, &mut Budget::per_commit()),
        Ok(full)
    );
    assert_eq!(
        manifest_data_paths(&manifest, &mut Budget::per_commit()).map(|_| ()),
        Ok(())
    );
    assert_eq!(
        manifest_list_paths(&list, &mut Budget::per_commit()).map(|_| ()),
        Ok(())
    );
    let listed: Vec<String> =
        ManifestList::parse_with_version(&list, iceberg::spec::FormatVersion::V2)
            .unwrap()
            .consume_entries()
            .into_iter()
            .map(|m| m.manifest_path)
            .collect();
    assert_eq!(listed, std::slice::from_ref(&manifest_path));
    assert_eq!(
        manifest_list_paths(&list, &mut Budget::per_commit()),
        Ok(listed)
    );
    // A manifest list is not a manifest, nor the other way round.
    assert!(
        manifest_data_paths(&list, &mut Budget::per_commit())
            .unwrap_err()
            .contains("data_file")
    );
    assert!(manifest_list_paths(&manifest, &mut Budget::per_commit()).is_err());
    // Cut anywhere, or with one byte of a block changed, the file is refused.
    for cut in [5, manifest.len() / 2, manifest.len() - 1] {
        assert!(
            manifest_data_paths(&manifest[..cut], &mut Budget::per_commit()).is_err(),
            "cut at {cut}"
        );
    }
    let mut sync_broken = manifest.clone();
    let last = sync_broken.len() - 1;
    sync_broken[last] ^= 0xff;
    assert!(manifest_data_paths(&sync_broken, &mut Budget::per_commit()).is_err());
}

/// Files PyIceberg 0.12 wrote (an append's manifest and its list, deflate-compressed):
/// read here with the full parser's paths.
#[test]
fn pyiceberg_files_are_read_here() {
    use iceberg::spec::{FormatVersion, ManifestList};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/pyiceberg");
    let manifest = std::fs::read(format!("{dir}/manifest.avro")).unwrap();
    let list = std::fs::read(format!("{dir}/manifest-list.avro")).unwrap();
    let full = full_parser_paths(&manifest);
    assert!(!full.is_empty());
    assert_eq!(
        manifest_data_paths(&manifest, &mut Budget::per_commit()),
        Ok(full)
    );
    let listed: Vec<String> = ManifestList::parse_with_version(&list, FormatVersion::V2)
        .unwrap()
        .consume_entries()
        .into_iter()
        .map(|m| m.manifest_path)
        .collect();
    assert!(listed.len() > 1);
    assert_eq!(
        manifest_list_paths(&list, &mut Budget::per_commit()),
        Ok(listed)
    );
}

/// A manifest whose `file_path` is not the field with id 100 is refused: Java and
/// PyIceberg would read the other field.
#[test]
fn path_fields_whose_names_and_ids_disagree_are_refused() {
    let file = |schema: &str| {
        let schema = Schema::parse_str(schema).unwrap();
        apache_avro::Writer::new(&schema, Vec::new())
            .into_inner()
            .unwrap()
    };
    let manifest = |fields: &str| {
        file(&format!(
            r#"{{"type":"record","name":"e","fields":[{{"name":"status","type":"int","field-id":0}},
            {{"name":"data_file","field-id":2,"type":{{"type":"record","name":"r2","fields":[{fields}]}}}}]}}"#
        ))
    };
    let agreeing = manifest(r#"{"name":"file_path","type":"string","field-id":100}"#);
    assert_eq!(
        manifest_data_paths(&agreeing, &mut Budget::per_commit()).map(|_| ()),
        Ok(())
    );
    let swapped = manifest(
        r#"{"name":"file_path","type":"string","field-id":9999},{"name":"x","type":"string","field-id":100}"#,
    );
    let err = manifest_data_paths(&swapped, &mut Budget::per_commit())
        .map(|_| ())
        .unwrap_err();
    assert!(err.contains("field id 100"), "{err}");
    let twice = manifest(
        r#"{"name":"file_path","type":"string","field-id":100},{"name":"y","type":"string","field-id":100}"#,
    );
    assert!(
        manifest_data_paths(&twice, &mut Budget::per_commit())
            .map(|_| ())
            .is_err()
    );
    let unnumbered = manifest(
        r#"{"name":"file_path","type":"string","field-id":101},{"name":"z","type":"string"}"#,
    );
    assert!(
        manifest_data_paths(&unnumbered, &mut Budget::per_commit())
            .map(|_| ())
            .is_err()
    );
    // A data_file that is not a record in place is not looked into: refused.
    let hidden = file(
        r#"{"type":"record","name":"e","fields":[{"name":"data_file","field-id":2,"type":["null",{"type":"record","name":"r2","fields":[{"name":"file_path","type":"string","field-id":9}]}]}]}"#,
    );
    assert!(
        manifest_data_paths(&hidden, &mut Budget::per_commit())
            .map(|_| ())
            .is_err()
    );
    // Without any field ids every reader goes by name.
    let plain = file(
        r#"{"type":"record","name":"e","fields":[{"name":"data_file","type":{"type":"record","name":"r2","fields":[{"name":"file_path","type":"string"}]}}]}"#,
    );
    assert_eq!(
        manifest_data_paths(&plain, &mut Budget::per_commit()).map(|_| ()),
        Ok(())
    );
    let list = |fields: &str| {
        file(&format!(
            r#"{{"type":"record","name":"m","fields":[{fields}]}}"#
        ))
    };
    assert_eq!(
        manifest_list_paths(
            &list(r#"{"name":"manifest_path","type":"string","field-id":500}"#),
            &mut Budget::per_commit()
        )
        .map(|_| ()),
        Ok(())
    );
    assert!(
        manifest_list_paths(&list(r#"{"name":"manifest_path","type":"string","field-id":501},{"name":"p","type":"string","field-id":500}"#), &mut Budget::per_commit()).map(|_| ())
        .is_err()
    );
    // The files engines write agree.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/pyiceberg");
    let read = |f: &str| std::fs::read(format!("{dir}/{f}")).unwrap();
    assert_eq!(
        manifest_data_paths(&read("manifest.avro"), &mut Budget::per_commit()).map(|_| ()),
        Ok(())
    );
    assert_eq!(
        manifest_list_paths(&read("manifest-list.avro"), &mut Budget::per_commit()).map(|_| ()),
        Ok(())
    );
}

#[test]
fn files_that_are_not_what_they_seem_are_refused() {
    assert!(manifest_list_paths(b"", &mut Budget::per_commit()).is_err());
    assert!(manifest_list_paths(b"PAR1....", &mut Budget::per_commit()).is_err());
    assert!(manifest_data_paths(b"Obj\x01\x02", &mut Budget::per_commit()).is_err());
    // A schema longer than what is read here is refused.
    let long_schema = format!(
        r#"{{"type":"record","name":"r","doc":"{}","fields":[{{"name":"manifest_path","type":"string"}}]}}"#,
        "x".repeat(SCHEMA_TEXT_MAX)
    );
    let bytes = one_entry_list(&long_schema);
    assert!(
        manifest_list_paths(&bytes, &mut Budget::per_commit())
            .unwrap_err()
            .contains("SCHEMA_TEXT_MAX")
    );
    // A block of no records ends the file for Avro's readers: what follows it is not
    // read here either.
    let bytes = one_entry_list(LIST_SCHEMA);
    assert_eq!(
        manifest_list_paths(&bytes, &mut Budget::per_commit()),
        Ok(vec!["file:///w/t/m.avro".to_owned()])
    );
    let sync = bytes[bytes.len() - 16..].to_vec();
    let mut ended = bytes.clone();
    ended.extend([0u8, 0u8]);
    ended.extend(&sync);
    assert_eq!(
        manifest_list_paths(&ended, &mut Budget::per_commit()),
        Ok(vec!["file:///w/t/m.avro".to_owned()])
    );
    // Anything after it, or data in it, is refused: some readers (avro-c) go on.
    let mut after = ended.clone();
    after.extend([2u8, 4, b'x', b'y', 0, 0]);
    assert!(manifest_list_paths(&after, &mut Budget::per_commit()).is_err());
    let mut carrying = bytes.clone();
    carrying.extend([0u8, 4, 2, b'x']);
    carrying.extend(&sync);
    assert!(manifest_list_paths(&carrying, &mut Budget::per_commit()).is_err());
}

/// One commit's files share one budget of decoding work.
#[test]
fn a_commit_s_files_share_one_budget() {
    let record = avro_bytes(b"file:///w/t/m.avro");
    let file = container(LIST_SCHEMA, "null", 1, &record);
    let mut budget = Budget {
        visits: 3,
        bytes: COMMIT_BYTES_MAX,
    };
    assert!(manifest_list_paths(&file, &mut budget).is_ok());
    assert!(manifest_list_paths(&file, &mut budget).is_ok());
    assert!(manifest_list_paths(&file, &mut budget).is_ok());
    let err = manifest_list_paths(&file, &mut budget).unwrap_err();
    assert!(err.contains("VISITS_MAX"), "{err}");
    let mut budget = Budget {
        visits: VISITS_MAX,
        bytes: record.len() + 1,
    };
    assert!(manifest_list_paths(&file, &mut budget).is_ok());
    assert!(manifest_list_paths(&file, &mut budget).is_err());
}

/// A manifest list of one entry (`file:///w/t/m.avro`) under `schema`, written by apache
/// avro.
fn one_entry_list(schema: &str) -> Vec<u8> {
    let schema = Schema::parse_str(schema).unwrap();
    let mut w = apache_avro::Writer::new(&schema, Vec::new());
    let mut record = apache_avro::types::Record::new(&schema).unwrap();
    record.put("manifest_path", "file:///w/t/m.avro");
    w.append(record).unwrap();
    w.into_inner().unwrap()
}

const LIST_SCHEMA: &str =
    r#"{"type":"record","name":"r","fields":[{"name":"manifest_path","type":"string"}]}"#;
const SYNC: [u8; 16] = [7; 16];

fn avro_long(v: i64) -> Vec<u8> {
    apache_avro::to_avro_datum(&Schema::Long, Value::Long(v)).unwrap()
}

fn avro_bytes(b: &[u8]) -> Vec<u8> {
    let mut out = avro_long(b.len() as i64);
    out.extend_from_slice(b);
    out
}

/// An object container written by hand: one block of `count` records (`data`,
/// already compressed with `codec`).
fn container(schema: &str, codec: &str, count: i64, data: &[u8]) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    out.extend(avro_long(2));
    out.extend(avro_bytes(b"avro.schema"));
    out.extend(avro_bytes(schema.as_bytes()));
    out.extend(avro_bytes(b"avro.codec"));
    out.extend(avro_bytes(codec.as_bytes()));
    out.extend(avro_long(0));
    out.extend(SYNC);
    out.extend(avro_long(count));
    out.extend(avro_bytes(data));
    out.extend(SYNC);
    out
}

/// The logical types Java and PyIceberg read as their layout are read so; every other
/// pairing is refused (Java reads any `uuid` as 16 raw bytes, PyIceberg a decimal as
/// the bytes its precision needs, apache avro a fixed `uuid` as a string).
#[test]
fn logical_types_are_read_as_java_reads_them_or_refused() {
    let list = |extra: &str| {
        format!(
            r#"{{"type":"record","name":"r","fields":[{extra},{{"name":"manifest_path","type":"string","field-id":500}}]}}"#
        )
    };
    let schema = list(
        r#"{"name":"u","type":{"type":"fixed","name":"f16","size":16,"logicalType":"uuid"},"field-id":1},
        {"name":"d","type":{"type":"fixed","name":"f4","size":4,"logicalType":"decimal","precision":9,"scale":2},"field-id":2},
        {"name":"day","type":{"type":"int","logicalType":"date"},"field-id":3},
        {"name":"t","type":{"type":"long","logicalType":"timestamp-micros"},"field-id":4}"#,
    );
    let path = "file:///w/t/metadata/m.avro";
    let mut record = Vec::new();
    // Sixteen bytes that read as a string would be a 2-byte path "ev".
    record.extend([4u8, b'e', b'v']);
    record.extend([0u8; 13]);
    record.extend([0u8, 0, 1, 0]);
    record.extend(avro_long(19_000));
    record.extend(avro_long(1_700_000_000_000_000));
    record.extend(avro_bytes(path.as_bytes()));
    let file = container(&schema, "null", 1, &record);
    assert_eq!(
        manifest_list_paths(&file, &mut Budget::per_commit()),
        Ok(vec![path.to_owned()])
    );
    for refused in [
        r#"{"name":"u","type":{"type":"string","logicalType":"uuid"},"field-id":1}"#,
        r#"{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2},"field-id":1}"#,
        r#"{"name":"d","type":{"type":"fixed","name":"f8","size":8,"logicalType":"decimal","precision":9,"scale":2},"field-id":1}"#,
        r#"{"name":"d","type":{"type":"fixed","name":"f12","size":12,"logicalType":"duration"},"field-id":1}"#,
        r#"{"name":"u","type":{"type":"fixed","name":"f","size":16},"logicalType":"uuid","field-id":1}"#,
    ] {
        let file = container(&list(refused), "null", 1, &record);
        let err = manifest_list_paths(&file, &mut Budget::per_commit()).unwrap_err();
        assert!(err.contains("logicalType"), "{refused}: {err}");
    }
    assert_eq!(decimal_bytes(9), Some(4));
    assert_eq!(decimal_bytes(38), Some(16));
    assert_eq!(decimal_bytes(2), Some(1));
    assert_eq!(decimal_bytes(3), Some(2));
}

/// A second fixed of one type is written by name (Java's writer does so): read as the
/// fixed it names; two fixed types of one name and different sizes are refused.
#[test]
fn a_fixed_may_be_named_again() {
    let schema = r#"{"type":"record","name":"r","fields":[
        {"name":"a","type":{"type":"fixed","name":"iceberg.uuid_fixed","size":16,"logicalType":"uuid"},"field-id":1},
        {"name":"b","type":["null","uuid_fixed"],"field-id":2},
        {"name":"manifest_path","type":"string","field-id":500}]}"#;
    let mut record = vec![1u8; 16];
    record.extend(avro_long(1));
    record.extend([2u8; 16]);
    record.extend(avro_bytes(b"file:///w/t/m.avro"));
    assert_eq!(
        manifest_list_paths(
            &container(schema, "null", 1, &record),
            &mut Budget::per_commit()
        ),
        Ok(vec!["file:///w/t/m.avro".to_owned()])
    );
    let clash = schema.replace(
        r#"["null","uuid_fixed"]"#,
        r#"{"type":"fixed","name":"other.uuid_fixed","size":8}"#,
    );
    let err = manifest_list_paths(
        &container(&clash, "null", 1, &record),
        &mut Budget::per_commit(),
    )
    .unwrap_err();
    assert!(err.contains("two types named"), "{err}");
    // A reference whose simple name is also a record's: Java and avro-c resolve it to
    // the record, so it is refused, not read as the fixed.
    let collide = r#"{"type":"record","name":"r","fields":[
        {"name":"f1","type":{"type":"fixed","name":"a.x","size":4},"field-id":1},
        {"name":"f2","type":{"type":"record","name":"x","fields":[{"name":"s","type":"string","field-id":3}]},"field-id":2},
        {"name":"f3","type":"x","field-id":4},
        {"name":"manifest_path","type":"string","field-id":500}]}"#;
    let err = manifest_list_paths(
        &container(collide, "null", 1, &record),
        &mut Budget::per_commit(),
    )
    .unwrap_err();
    assert!(err.contains("two types named"), "{err}");
}

#[test]
fn schemas_that_could_make_decoding_unbounded_are_refused() {
    let refused = |schema: &str, why: &str| {
        let file = container(schema, "null", 1, &[2, b'x']);
        let err = manifest_list_paths(&file, &mut Budget::per_commit()).unwrap_err();
        assert!(err.contains(why), "{schema}: {err}");
    };
    refused(
        r#"{"type":"record","name":"r","fields":[{"name":"manifest_path","type":"string"},{"name":"next","type":["null","r"]}]}"#,
        "by name",
    );
    refused(
        r#"{"type":"record","name":"r","fields":[{"name":"manifest_path","type":"string"},{"name":"a","type":{"type":"array","items":"null"}}]}"#,
        "array of items that take no bytes",
    );
    refused(
        r#"{"type":"record","name":"r","fields":[{"name":"n","type":"null"}]}"#,
        "take no bytes",
    );
    refused(
        r#"{"type":"record","name":"r","fields":[{"name":"manifest_path","type":"string"},{"name":"x","type":"nowhere"}]}"#,
        "the type nowhere by name",
    );
    let deep = format!(
        r#"{{"type":"record","name":"r","fields":[{{"name":"manifest_path","type":"string"}},{{"name":"a","type":{}"int"{}}}]}}"#,
        r#"{"type":"array","items":"#.repeat(DEPTH_MAX + 1),
        "}".repeat(DEPTH_MAX + 1)
    );
    refused(&deep, "nests deeper");
    refused(
        LIST_SCHEMA.replace("record", "enum").as_str(),
        "the type enum, which Iceberg's manifests do not use",
    );
    let with = |field: &str| {
        format!(
            r#"{{"type":"record","name":"r","fields":[{field},{{"name":"manifest_path","type":"string","field-id":500}}]}}"#
        )
    };
    // Field ids Java would read as 500 too, or twice.
    refused(
        &with(r#"{"name":"x","type":"string","field-id":"500"}"#),
        "not an integer",
    );
    refused(
        &with(r#"{"name":"x","type":"string","field-id":500.0}"#),
        "not an integer",
    );
    refused(
        &with(r#"{"name":"x","type":"string","field-id":4294967796}"#),
        "not an integer",
    );
    refused(
        &with(r#"{"name":"x","type":"string","field-id":500}"#),
        "two fields",
    );
    // Unions other than ["null", T], enums, and fixed sizes past the limit.
    refused(
        &with(r#"{"name":"x","type":["string","null"],"field-id":1}"#),
        "union",
    );
    refused(
        &with(r#"{"name":"x","type":["null","string","long"],"field-id":1}"#),
        "union",
    );
    refused(
        &with(r#"{"name":"x","type":{"type":"enum","name":"e","symbols":["a"]},"field-id":1}"#),
        "enum",
    );
    refused(
        &with(
            r#"{"name":"x","type":{"type":"fixed","name":"f","size":1099511627776},"field-id":1}"#,
        ),
        "fixed",
    );

    // An array block with a negative count (and a byte size that some readers skip by).
    let schema = with(r#"{"name":"a","type":{"type":"array","items":"string"},"field-id":9}"#);
    let mut record = avro_long(-1);
    record.extend(avro_long(3));
    record.extend(avro_bytes(b"x"));
    record.extend(avro_long(0));
    record.extend(avro_bytes(b"file:///w/t/m.avro"));
    let err = manifest_list_paths(
        &container(&schema, "null", 1, &record),
        &mut Budget::per_commit(),
    )
    .unwrap_err();
    assert!(err.contains("count floe does not read"), "{err}");
    // A block that claims more records than it has bytes.

    let file = container(LIST_SCHEMA, "null", 1_000, &[2, b'x']);
    assert!(manifest_list_paths(&file, &mut Budget::per_commit()).is_err());
    // A codec floe does not read.
    let file = container(LIST_SCHEMA, "bzip2", 1, &[2, b'x']);
    assert!(
        manifest_list_paths(&file, &mut Budget::per_commit())
            .unwrap_err()
            .contains("codec")
    );
}

/// Blocks that decompress past the limit are refused without being decompressed
/// whole; blocks within it read.
#[test]
fn decompression_is_bounded() {
    let record = avro_bytes(b"file:///w/t/m.avro");
    let deflated = miniz_oxide::deflate::compress_to_vec(&record, 6);
    assert_eq!(
        manifest_list_paths(
            &container(LIST_SCHEMA, "deflate", 1, &deflated),
            &mut Budget::per_commit()
        ),
        Ok(vec!["file:///w/t/m.avro".to_owned()])
    );
    let zeros = vec![0u8; BLOCK_BYTES_MAX + 1];
    let bomb = miniz_oxide::deflate::compress_to_vec(&zeros, 1);
    let err = manifest_list_paths(
        &container(LIST_SCHEMA, "deflate", 1, &bomb),
        &mut Budget::per_commit(),
    )
    .unwrap_err();
    assert!(err.contains("decompresses to more than"), "{err}");
    let bomb = zstd::stream::encode_all(&zeros[..], 1).unwrap();
    let err = manifest_list_paths(
        &container(LIST_SCHEMA, "zstandard", 1, &bomb),
        &mut Budget::per_commit(),
    )
    .unwrap_err();
    assert!(err.contains("decompresses to more than"), "{err}");
    let mut snappy = snap::raw::Encoder::new().compress_vec(&record).unwrap();
    snappy.extend(crc32fast::hash(&record).to_be_bytes());
    assert_eq!(
        manifest_list_paths(
            &container(LIST_SCHEMA, "snappy", 1, &snappy),
            &mut Budget::per_commit()
        ),
        Ok(vec!["file:///w/t/m.avro".to_owned()])
    );
    let last = snappy.len() - 1;
    snappy[last] ^= 1;
    let err = manifest_list_paths(
        &container(LIST_SCHEMA, "snappy", 1, &snappy),
        &mut Budget::per_commit(),
    )
    .unwrap_err();
    assert!(err.contains("checksum"), "{err}");
    // A snappy block that claims a length past the limit (its header is a varint).
    let mut claims = Vec::new();
    let mut n = (BLOCK_BYTES_MAX + 1) as u64;
    while n >= 0x80 {
        claims.push((n as u8) | 0x80);
        n >>= 7;
    }
    claims.push(n as u8);
    claims.extend([0u8; 8]);
    let err = manifest_list_paths(
        &container(LIST_SCHEMA, "snappy", 1, &claims),
        &mut Budget::per_commit(),
    )
    .unwrap_err();
    assert!(err.contains("decompresses to more than"), "{err}");
}
