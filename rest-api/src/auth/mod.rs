//! Authentication (issue 19): who a request is. With `--auth off` every request is the
//! anonymous principal under `AllowAll`, as before (and PyIceberg's `Bearer None` is
//! ignored). With `--auth required` a request carries `Authorization: Bearer <token>`:
//! the bootstrap admin token (`FLOE_ADMIN_TOKEN`), a token floe issued (`floe_pat_...`),
//! or a JWT of the configured OIDC issuer (`oidc.rs`); without one it is anonymous only if
//! `--anonymous ROLE` grants a role.
//! A missing or bad token is a 401 with `WWW-Authenticate: Bearer` in the shape of the API
//! asked (floe's or Iceberg's). `/health` and `/ready` stay open. The principal is the
//! request task's (`current`): every handler reads it there, and outside a request it is
//! the anonymous principal, whom the rules of an authenticated server refuse.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::Response;
use floe_catalog::{ADMIN, Principal};

use floe_catalog::Catalog;
use floe_catalog::deferred::Scope;

use crate::error::{Api, ApiError, ErrorKind};

pub mod jwt;
pub mod oidc;

pub use oidc::{Oidc, OidcOptions};

/// How a server authenticates (`floe serve --auth`, `FLOE_ADMIN_TOKEN`, `--anonymous`).
#[derive(Clone, Default)]
pub struct AuthOptions {
    /// Tokens are required (else every request is the anonymous admin).
    pub required: bool,
    /// The bootstrap token: the principal `admin`, who may do everything.
    pub admin_token: Option<String>,
    /// The role a request without a token has (none: it is refused).
    pub anonymous_role: Option<String>,
    /// The OIDC issuer whose tokens are accepted (started: its keys fetched or tried).
    pub oidc: Option<std::sync::Arc<Oidc>>,
}

impl std::fmt::Debug for AuthOptions {
    // Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOptions")
            .field("required", &self.required)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("anonymous_role", &self.anonymous_role)
            .field("oidc", &self.oidc.as_ref().map(|_| "<set>"))
            .finish()
    }
}

tokio::task_local! {
    static PRINCIPAL: Principal;
}

/// The principal of the request being served (anonymous outside one).
pub fn current() -> Principal {
    PRINCIPAL
        .try_with(Clone::clone)
        .unwrap_or_else(|_| Principal::anonymous())
}

/// How long a checked token is taken as valid without reading the store again: a token
/// revoked on another server is refused within this (on this one, at once).
const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a checked JWT is taken as valid without checking it again.
const JWT_CACHE_MAX: std::time::Duration = std::time::Duration::from_secs(300);
/// Tokens kept checked at most (then the cache starts over).
const TOKEN_CACHE_MAX: usize = 10_000;

/// Tokens checked lately: their principal and until when it holds, by the token's hash
/// (never the token). A floe token holds for `TOKEN_CACHE_TTL` (it can be revoked), a JWT
/// until it expires (nothing revokes it). Each `clear` starts a new generation: a check
/// that began before it is not kept (it may have read a token a revoke just removed).
#[derive(Debug, Default)]
pub struct TokenCache {
    checked: parking_lot::Mutex<Checked>,
}

#[derive(Debug, Default)]
struct Checked {
    by_hash: std::collections::HashMap<blake3::Hash, (Principal, std::time::Instant)>,
    generation: u64,
}

impl TokenCache {
    fn get(&self, hash: &blake3::Hash) -> Option<Principal> {
        let checked = self.checked.lock();
        let (p, until) = checked.by_hash.get(hash)?;
        (std::time::Instant::now() < *until).then(|| p.clone())
    }

    /// The generation a check starts in (taken before it reads anything).
    fn generation(&self) -> u64 {
        self.checked.lock().generation
    }

    /// Keeps a check that began in `generation`, unless the cache was cleared since.
    fn put(
        &self,
        generation: u64,
        hash: blake3::Hash,
        principal: Principal,
        until: std::time::Instant,
    ) {
        let mut checked = self.checked.lock();
        if checked.generation != generation {
            return;
        }
        if checked.by_hash.len() >= TOKEN_CACHE_MAX {
            checked.by_hash.clear();
        }
        checked.by_hash.insert(hash, (principal, until));
    }

    /// Forgets every checked token (one was revoked here), and every check under way.
    pub fn clear(&self) {
        let mut checked = self.checked.lock();
        checked.by_hash.clear();
        checked.generation += 1;
    }
}

/// What the authentication layer holds: the options, the catalog that checks tokens, the
/// cache of checked ones (one `Arc` per request, not the whole server state).
#[derive(Debug)]
pub struct AuthState {
    required: bool,
    /// The admin token's hash (compared by hash: no timing says anything of it).
    admin: Option<blake3::Hash>,
    anonymous_role: Option<String>,
    oidc: Option<std::sync::Arc<Oidc>>,
    catalog: Catalog,
    pub tokens: TokenCache,
}

impl AuthState {
    pub fn new(catalog: Catalog, options: &AuthOptions) -> AuthState {
        AuthState {
            required: options.required,
            admin: options
                .admin_token
                .as_ref()
                .map(|t| blake3::hash(t.as_bytes())),
            anonymous_role: options.anonymous_role.clone(),
            oidc: options.oidc.clone(),
            catalog,
            tokens: TokenCache::default(),
        }
    }
}

/// The paths anyone may ask, token or not.
const OPEN: [&str; 2] = ["/health", "/ready"];

/// Resolves the request's principal (a 401 if it has none it may use) and hands it on.
pub async fn authenticate(
    State(auth): State<std::sync::Arc<AuthState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if !auth.required || OPEN.contains(&path) {
        let anonymous = Principal::anonymous();
        tracing::Span::current().record("principal", anonymous.name());
        return PRINCIPAL.scope(anonymous, next.run(request)).await;
    }
    let api = Api::of(path, None);
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .map(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .map(str::trim)
                .ok_or(())
        });
    let principal = match bearer {
        None => match &auth.anonymous_role {
            Some(role) => Ok(Principal::anonymous().with_roles([role.clone()])),
            None => Err(refused(
                api,
                "this server requires a token: send Authorization: Bearer <token> (floe --token or FLOE_TOKEN; PyIceberg token=; DuckDB's TOKEN)",
                false,
            )),
        },
        Some(Err(())) => Err(refused(
            api,
            "the Authorization header is not `Bearer <token>`",
            true,
        )),
        Some(Ok(token)) => resolve(&auth, token, api).await,
    };
    match principal {
        Ok(p) => {
            tracing::Span::current().record("principal", p.name());
            PRINCIPAL.scope(p, next.run(request)).await
        }
        Err(response) => {
            read_refused_body(request.into_body()).await;
            response
        }
    }
}

/// The most of a refused request's body that is read (and dropped) before its answer.
const REFUSED_BODY_READ_MAX: usize = 64 * 1024;

/// Reads and drops a refused request's body, when small: a body left unread makes the
/// server close the connection after the answer, and a client reusing the connection
/// fails instead of reading the answer (401s, unknown routes and methods alike).
pub(crate) async fn read_refused_body(body: axum::body::Body) {
    let _ = axum::body::to_bytes(body, REFUSED_BODY_READ_MAX).await;
}

/// A 401 in the API's shape, with its challenge.
fn refused(api: Api, message: &str, token_given: bool) -> Response {
    let mut response = ApiError::new(ErrorKind::Unauthorized, message).render(api);
    let challenge = if token_given {
        r#"Bearer error="invalid_token""#
    } else {
        "Bearer"
    };
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// The principal of a bearer token, or the answer refusing it.
async fn resolve(auth: &AuthState, token: &str, api: Api) -> Result<Principal, Response> {
    let hash = blake3::hash(token.as_bytes());
    // `blake3::Hash` compares in constant time.
    if auth.admin == Some(hash) {
        return Ok(Principal::named(ADMIN).with_roles([ADMIN.to_owned()]));
    }
    if let Some(p) = auth.tokens.get(&hash) {
        return Ok(p);
    }
    let generation = auth.tokens.generation();
    if let Some(oidc) = &auth.oidc
        && Oidc::looks_like_jwt(token)
    {
        return match oidc.accept(token).await {
            Ok(accepted) => {
                // Until it expires, but no longer than JWT_CACHE_MAX: a key the issuer
                // withdraws stops vouching for its tokens within that.
                let left = accepted
                    .valid_until
                    .saturating_sub(oidc::unix_now())
                    .clamp(0, JWT_CACHE_MAX.as_secs() as i64) as u64;
                let until = std::time::Instant::now() + std::time::Duration::from_secs(left);
                auth.tokens
                    .put(generation, hash, accepted.principal.clone(), until);
                Ok(accepted.principal)
            }
            Err(oidc::OidcError::Refused(why)) => Err(refused(api, &why, true)),
            Err(oidc::OidcError::Unavailable(why)) => {
                Err(ApiError::new(ErrorKind::Unavailable, why).render(api))
            }
        };
    }
    let catalog = auth.catalog.clone();
    let token = token.to_owned();
    let read = crate::write::off_thread(Scope::Read, move || catalog.authenticate(&token));
    match read.await {
        Ok(Ok(Some(p))) => {
            let until = std::time::Instant::now() + TOKEN_CACHE_TTL;
            auth.tokens.put(generation, hash, p.clone(), until);
            Ok(p)
        }
        Ok(Ok(None)) => Err(refused(
            api,
            "the token is not valid here (unknown, revoked or expired): ask an admin for a new one (floe token create)",
            true,
        )),
        Ok(Err(e)) => Err(ApiError::from(e).render(api)),
        Err(e) => Err(e.render(api)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check that read the store before a revoke here cleared the cache is not kept
    /// after it: the revoked token is refused at once on this server.
    #[test]
    fn a_check_begun_before_a_clear_is_not_kept() {
        let cache = TokenCache::default();
        let hash = blake3::hash(b"floe_pat_x");
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let began = cache.generation();
        cache.clear();
        cache.put(began, hash, Principal::named("ana"), later);
        assert!(cache.get(&hash).is_none(), "the stale check was kept");
        let now = cache.generation();
        cache.put(now, hash, Principal::named("ana"), later);
        assert_eq!(
            cache.get(&hash).map(|p| p.name().to_owned()),
            Some("ana".to_owned())
        );
    }
}
