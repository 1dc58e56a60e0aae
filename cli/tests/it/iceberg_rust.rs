//! The iceberg-rust REST client (`iceberg-catalog-rest` 0.10.1) against a real
//! `floe serve`: create a namespace and a table, load it, commit to it, list, on `main` and
//! on a branch. Its config call, prefix handling and HEAD-based existence checks are the
//! ones CLIENTS.md describes.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::io::LocalFsStorageFactory;
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_rest::RestCatalogBuilder;

use crate::harness::Running;

async fn client(s: &Running, warehouse: &str) -> iceberg_catalog_rest::RestCatalog {
    RestCatalogBuilder::default()
        .with_storage_factory(Arc::new(LocalFsStorageFactory))
        .load(
            "floe",
            HashMap::from([
                ("uri".to_owned(), format!("{}/iceberg", s.url())),
                ("warehouse".to_owned(), warehouse.to_owned()),
            ]),
        )
        .await
        .expect("the REST client loads floe's config")
}

#[test]
fn iceberg_rust_creates_loads_commits_and_lists() {
    scenario(&Running::start(), "file://");
}

/// The same on a warehouse on S3 (moto): locations are the bucket's; the client never
/// needs the files for these calls.
#[test]
#[ignore = "slow: .ci/run runs it in its slow phase (cargo test -- --ignored)"]
fn slow_iceberg_rust_creates_loads_commits_and_lists_on_s3() {
    let moto =
        crate::s3::Moto::start().expect("moto_server in FLOE_TEST_VENV (tests/requirements.txt)");
    moto.create_bucket("floe-iceberg-rust");
    let s = Running::start_with_env(
        &[
            "--warehouse",
            "s3://floe-iceberg-rust/wh",
            "--s3-endpoint",
            &moto.endpoint,
            "--s3-path-style",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    );
    scenario(&s, "s3://floe-iceberg-rust/wh/");
}

/// Create, load, branch, commit on the branch only, list; every location under `scheme`.
fn scenario(s: &Running, scheme: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let main = client(s, "main").await;
        let ns = NamespaceIdent::new("lake".to_owned());
        main.create_namespace(&ns, HashMap::from([("owner".to_owned(), "ana".to_owned())]))
            .await
            .unwrap();
        assert!(main.namespace_exists(&ns).await.unwrap());
        assert_eq!(main.list_namespaces(None).await.unwrap(), vec![ns.clone()]);
        let schema = Schema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(2, "name", Type::Primitive(PrimitiveType::String)).into(),
            ])
            .build()
            .unwrap();
        let creation = TableCreation::builder()
            .name("events".to_owned())
            .schema(schema)
            .build();
        let created = main.create_table(&ns, creation).await.unwrap();
        let location = created.metadata().location();
        assert!(location.starts_with(scheme), "{location}");
        let ident = TableIdent::new(ns.clone(), "events".to_owned());
        assert!(main.table_exists(&ident).await.unwrap());
        let loaded = main.load_table(&ident).await.unwrap();
        assert_eq!(
            loaded.metadata().uuid(),
            created.metadata().uuid(),
            "the same table"
        );

        // Branch, then commit a property on the branch only.
        s.branch("dev", "main");
        let dev = client(s, "dev").await;
        let table = dev.load_table(&ident).await.unwrap();
        let tx = Transaction::new(&table);
        let tx = tx
            .update_table_properties()
            .set("stage".to_owned(), "dev".to_owned())
            .apply(tx)
            .unwrap();
        let committed = tx.commit(&dev).await.unwrap();
        assert_eq!(
            committed
                .metadata()
                .properties()
                .get("stage")
                .map(String::as_str),
            Some("dev")
        );
        let on_dev = dev.load_table(&ident).await.unwrap();
        assert_eq!(
            on_dev
                .metadata()
                .properties()
                .get("stage")
                .map(String::as_str),
            Some("dev")
        );
        let on_main = main.load_table(&ident).await.unwrap();
        assert!(!on_main.metadata().properties().contains_key("stage"));
        assert_eq!(dev.list_tables(&ns).await.unwrap(), vec![ident.clone()]);
        let missing = TableIdent::new(ns.clone(), "nope".to_owned());
        assert!(!main.table_exists(&missing).await.unwrap());
        assert!(main.load_table(&missing).await.is_err());
    });
}
