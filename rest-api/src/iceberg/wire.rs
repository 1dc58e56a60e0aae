//! The Iceberg REST wire (the spec's schemas, `../shared/specs/iceberg-rest-catalog-open-api.yaml`):
//! typed request and response bodies, kebab-case as the spec spells them. Each answer is
//! built as one of these and serialised once; none is spliced from strings or `json!`.
//! Table and view metadata travel as `RawValue`s: the bytes of the metadata file as
//! stored, which a load never re-serializes.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::{Schema, SortOrder, UnboundPartitionSpec, ViewVersion};
use iceberg::{TableRequirement, TableUpdate, ViewUpdate};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `CatalogConfig`: what `GET /v1/config` answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CatalogConfig {
    pub defaults: BTreeMap<String, String>,
    pub overrides: BTreeMap<String, String>,
    /// `ENDPOINTS` as JSON, serialized once (`config::endpoints_json`).
    pub endpoints: &'static RawValue,
    /// An ISO 8601 duration: how long a retry under an Idempotency-Key gets its answer.
    pub idempotency_key_lifetime: &'static str,
}

/// `TableIdentifier` (views use the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableIdentifier {
    pub namespace: Vec<String>,
    pub name: String,
}

/// `ListNamespacesResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ListNamespacesResponse {
    pub namespaces: Vec<Vec<String>>,
    /// Present whenever the list was cut short: never a silent truncation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `CreateNamespaceRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateNamespaceRequest {
    pub namespace: Vec<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `CreateNamespaceResponse` and `GetNamespaceResponse` (the same shape).
#[derive(Debug, Serialize)]
pub struct NamespaceResponse<'a> {
    pub namespace: Vec<String>,
    pub properties: &'a BTreeMap<String, String>,
}

/// `UpdateNamespacePropertiesRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UpdateNamespacePropertiesRequest {
    #[serde(default)]
    pub removals: Vec<String>,
    #[serde(default)]
    pub updates: BTreeMap<String, String>,
}

/// `UpdateNamespacePropertiesResponse`.
#[derive(Debug, Serialize)]
pub struct UpdateNamespacePropertiesResponse {
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub missing: Vec<String>,
}

/// `ListTablesResponse` (and the views' list, the same shape).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ListTablesResponse {
    pub identifiers: Vec<TableIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `CreateTableRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateTableRequest {
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    pub schema: Schema,
    #[serde(default)]
    pub partition_spec: Option<UnboundPartitionSpec>,
    #[serde(default)]
    pub write_order: Option<SortOrder>,
    #[serde(default)]
    pub stage_create: bool,
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

/// `LoadTableResult` (create, load, register) and `LoadViewResult` (the same shape, the
/// location always present). `config` holds the store's `s3.*` properties on S3.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadResult<'a> {
    /// Absent for a staged create, which stores nothing yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_location: Option<&'a str>,
    pub metadata: &'a RawValue,
    pub config: BTreeMap<String, String>,
    /// Vended credentials, for a client that asked (`X-Iceberg-Access-Delegation`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub storage_credentials: Vec<StorageCredential>,
}

/// `LoadCredentialsResponse`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoadCredentialsResponse {
    pub storage_credentials: Vec<StorageCredential>,
}

/// `StorageCredential`: credentials for the files under `prefix`.
#[derive(Debug, Serialize)]
pub struct StorageCredential {
    pub prefix: String,
    pub config: BTreeMap<String, String>,
}

/// `CommitTableResponse` (and the answer to an unregister: the table as it was).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitTableResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_location: Option<&'a str>,
    pub metadata: &'a RawValue,
}

/// `CommitTableRequest` (alone, or as one change of a transaction).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitTableRequest {
    #[serde(default)]
    pub identifier: Option<TableIdentifier>,
    #[serde(default)]
    pub requirements: Vec<TableRequirement>,
    #[serde(default)]
    pub updates: Vec<TableUpdate>,
}

/// `CommitTransactionRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitTransactionRequest {
    pub table_changes: Vec<CommitTableRequest>,
}

/// `RenameTableRequest` (views are renamed with the same body).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RenameTableRequest {
    pub source: TableIdentifier,
    pub destination: TableIdentifier,
}

/// `RegisterTableRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterTableRequest {
    pub name: String,
    pub metadata_location: String,
    #[serde(default)]
    pub overwrite: bool,
}

/// `ReportMetricsRequest`: floe counts reports by type and keeps nothing else of them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReportMetricsRequest {
    pub report_type: String,
}

/// `CreateViewRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreateViewRequest {
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
    pub schema: Schema,
    pub view_version: ViewVersion,
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

/// `ViewRequirement`: the spec has one.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ViewRequirement {
    AssertViewUuid { uuid: uuid::Uuid },
}

/// `CommitViewRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitViewRequest {
    #[serde(default)]
    pub identifier: Option<TableIdentifier>,
    #[serde(default)]
    pub requirements: Vec<ViewRequirement>,
    #[serde(default)]
    pub updates: Vec<ViewUpdate>,
}

/// `RegisterViewRequest`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegisterViewRequest {
    pub name: String,
    pub metadata_location: String,
}

/// `ErrorModel`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorModel {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub code: u16,
}

/// `IcebergErrorResponse`: the model under `error`; for the view routes whose answers the
/// spec documents as a bare `ErrorModel`, its fields at the top level too (`flat`).
#[derive(Debug, Serialize)]
pub struct IcebergErrorResponse {
    pub error: ErrorModel,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub flat: Option<ErrorModel>,
}
