//! `/api/v1/tokens` and `/api/v1/policy` (issue 19): the tokens floe issues and the
//! catalog's access policy, both for principals with `manage` on `**`. A token's value is
//! in the answer that creates it and nowhere else; so creating one is not replayed under
//! an Idempotency-Key (a retry makes a second token; revoke the first).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use floe_catalog::TokenInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ErrorBody, ErrorKind};
use crate::extract::ApiPath;
use crate::write::{self, Call, Reply};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Who the token stands for (the policy's `[principals]` maps names to roles).
    pub principal: String,
    /// Roles the token carries beside its principal's.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Valid for this many seconds (default: until revoked).
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// A token as listed (never its value).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenBody {
    pub id: String,
    pub principal: String,
    pub roles: Vec<String>,
    pub created_by: String,
    pub created_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

impl From<&TokenInfo> for TokenBody {
    fn from(t: &TokenInfo) -> TokenBody {
        TokenBody {
            id: t.id.clone(),
            principal: t.principal.clone(),
            roles: t.roles.clone(),
            created_by: t.created_by.clone(),
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
        }
    }
}

/// A token just made: `token` is its value, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewTokenBody {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenBody>,
}

/// The policy document (TOML).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub policy: String,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", operation_id = "createToken",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, description = "The token, its value shown this once", body = NewTokenBody),
        (status = 400, description = "Invalid principal, role or expiry; or authentication is off", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Needs manage on **", body = ErrorBody),
    ))]
pub async fn create_token(State(state): State<AppState>, call: Call) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let req: CreateTokenRequest = cx.call.json()?;
        let expires = match req.expires_in_seconds {
            Some(s) => Some(
                i64::try_from(s)
                    .ok()
                    .and_then(|s| s.checked_mul(1000))
                    .and_then(|ms| cx.catalog.now_ms().checked_add(ms))
                    .ok_or_else(|| ApiError::bad_request("expiresInSeconds is too large"))?,
            ),
            None => None,
        };
        let made = cx
            .catalog
            .create_token(&cx.principal, &req.principal, req.roles, expires)?;
        Reply::json(
            StatusCode::CREATED,
            &NewTokenBody {
                token: made.token,
                info: TokenBody::from(&made.info),
            },
        )
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "access", operation_id = "listTokens",
    responses(
        (status = 200, description = "Every token (never its value)", body = TokenList),
        (status = 400, description = "Authentication is off", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Needs manage on **", body = ErrorBody),
    ))]
pub async fn list_tokens(State(state): State<AppState>, call: Call) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let tokens = cx.catalog.list_tokens(&cx.principal)?;
        Reply::json(
            StatusCode::OK,
            &TokenList {
                tokens: tokens.iter().map(TokenBody::from).collect(),
            },
        )
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", operation_id = "revokeToken",
    params(("id" = String, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked on every server"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Needs manage on **", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    call: Call,
) -> Response {
    let auth = state.auth.clone();
    write::read_blocking(&state, call, move |cx| {
        let revoked = cx.catalog.revoke_token(&cx.principal, &id);
        // Refused at once here; other servers within the cache's lifetime. Cleared
        // whatever the revoke answered: one whose outcome is unknown may have applied.
        auth.tokens.clear();
        let revoked = revoked?;
        if revoked {
            Reply::empty(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::new(
                ErrorKind::NotFound,
                format!(
                    "no token has the id {:?} (floe token list)",
                    id.chars().take(64).collect::<String>()
                ),
            ))
        }
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/policy", tag = "access", operation_id = "getPolicy",
    responses(
        (status = 200, description = "The policy in force (TOML)", body = PolicyBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Needs manage on **", body = ErrorBody),
    ))]
pub async fn get_policy(State(state): State<AppState>, call: Call) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let policy = cx.catalog.policy_text(&cx.principal)?;
        Reply::json(StatusCode::OK, &PolicyBody { policy })
    })
    .await
}

#[utoipa::path(put, path = "/api/v1/policy", tag = "access", operation_id = "setPolicy",
    request_body = PolicyBody,
    responses(
        (status = 200, description = "The policy now in force", body = PolicyBody),
        (status = 400, description = "The document does not parse or names an undefined role (nothing changed); or authentication is off", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Needs manage on **", body = ErrorBody),
    ))]
pub async fn set_policy(State(state): State<AppState>, call: Call) -> Response {
    write::read_blocking(&state, call, move |cx| {
        let req: PolicyBody = cx.call.json()?;
        cx.catalog.set_policy(&cx.principal, &req.policy)?;
        let policy = cx.catalog.policy_text(&cx.principal)?;
        Reply::json(StatusCode::OK, &PolicyBody { policy })
    })
    .await
}
