//! OIDC bearer tokens (issue 19): floe validates tokens an identity provider issued; it
//! never issues them (clients get theirs from the IdP: PyIceberg's `credential=` with
//! `oauth2-server-uri`, DuckDB's `CLIENT_ID`/`OAUTH2_SERVER_URI`). At start floe reads the
//! issuer's discovery document (`/.well-known/openid-configuration`) and its key set
//! (`jwks_uri`). The set is fetched again when a token names a key it does not hold (a
//! rotation; at most once per cooldown, so a stream of made-up key ids costs one fetch) and
//! in the background when it is an hour old. An issuer that cannot be reached at start is
//! said so and tried again (at most once a second) when a token needs it; until then its
//! tokens are answered 503, and floe's own tokens keep working.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use floe_catalog::Principal;
use parking_lot::RwLock;
use serde::Deserialize;

use super::jwt::{self, Expect, Jwk, JwtError};

/// How a server checks OIDC tokens (`floe serve --oidc-*`).
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// The issuer URL, exactly as tokens name it in `iss`.
    pub issuer: String,
    /// What `aud` must contain.
    pub audience: String,
    /// The claim that names the principal (default `sub`).
    pub principal_claim: String,
    /// The claim whose values map to roles through the policy's `[groups]`.
    pub groups_claim: Option<String>,
    /// The least time between two fetches a token's unknown key id causes.
    pub refetch_cooldown: Duration,
}

/// Principal names floe gives itself: the bootstrap admin, the server, the anonymous.
const RESERVED: [&str; 3] = [floe_catalog::ADMIN, "floe", floe_catalog::ANONYMOUS];

/// The key set is fetched again in the background when it is this old.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// The least time between two attempts to reach an issuer that failed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How long one request to the issuer may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an OIDC token was not turned into a principal.
#[derive(Debug)]
pub enum OidcError {
    /// The token is wrong (401).
    Refused(String),
    /// The issuer's keys are not known and it cannot be reached (503).
    Unavailable(String),
}

#[derive(Debug, Default)]
struct Keys {
    jwks_uri: Option<String>,
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
    /// The last fetch an unknown key id caused.
    refetched: Option<Instant>,
    /// The last attempt that failed.
    failed: Option<Instant>,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// A verified OIDC token: its principal, and until when it may be taken as verified.
#[derive(Debug)]
pub struct Accepted {
    pub principal: Principal,
    /// `exp` plus the leeway, in seconds since the epoch.
    pub valid_until: i64,
}

/// The issuer's keys and how they are kept fresh.
#[derive(Debug)]
pub struct Oidc {
    options: OidcOptions,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// One fetch at a time; the others wait for it and use its keys.
    fetching: tokio::sync::Mutex<()>,
    /// Key-set fetches made (for `/metrics` and the tests).
    pub fetches: AtomicU64,
}

impl Oidc {
    /// Reads the issuer's discovery document and key set. An issuer that cannot be reached
    /// is logged, not fatal: its tokens wait for it.
    pub async fn start(options: OidcOptions) -> Result<Oidc, String> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("cannot build the OIDC HTTP client: {e}"))?;
        let oidc = Oidc {
            options,
            http,
            keys: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        };
        let _guard = oidc.fetching.lock().await;
        if let Err(e) = oidc.refresh().await {
            tracing::warn!(issuer = %oidc.options.issuer, error = %e,
                "could not reach the OIDC issuer; its tokens are refused (503) until it answers");
        }
        drop(_guard);
        Ok(oidc)
    }

    /// Whether a bearer token is one for the issuer to vouch for (a JWT, not floe's own).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.bytes().filter(|b| *b == b'.').count() == 2
    }

    /// The principal a token stands for.
    pub async fn accept(self: &Arc<Self>, token: &str) -> Result<Accepted, OidcError> {
        let refused = |e: JwtError| OidcError::Refused(e.to_string());
        let kid = jwt::key_id(token).map_err(refused)?;
        self.ensure_keys(kid.as_deref()).await?;
        let now = unix_now();
        let verified = {
            let keys = self.keys.read();
            jwt::verify(
                token,
                &keys.keys,
                &Expect {
                    issuer: &self.options.issuer,
                    audience: &self.options.audience,
                    now,
                },
            )
        }
        .map_err(refused)?;
        let claim = &self.options.principal_claim;
        let name = match verified.claims.get(claim) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(OidcError::Refused(format!(
                    "the token has no {claim:?} claim naming its principal"
                )));
            }
        };
        // The names floe gives its own principals are not the issuer's to claim.
        if RESERVED.contains(&name.as_str()) {
            return Err(OidcError::Refused(format!(
                "the token's {claim:?} is {name:?}, a name floe keeps for its own principals"
            )));
        }
        let groups = self
            .options
            .groups_claim
            .as_ref()
            .and_then(|c| verified.claims.get(c))
            .map(|v| match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(all) => all
                    .iter()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default();
        Ok(Accepted {
            principal: Principal::named(name).with_groups(groups),
            valid_until: verified.expires.saturating_add(jwt::LEEWAY_SECS),
        })
    }

    /// Makes sure the key set may hold the token's key: fetches it when it is missing, when
    /// the key id is unknown (once per cooldown), and in the background when it is old.
    async fn ensure_keys(self: &Arc<Self>, kid: Option<&str>) -> Result<(), OidcError> {
        let (have_keys, knows_kid, old) = {
            let k = self.keys.read();
            let knows = match kid {
                Some(kid) => k.keys.iter().any(|j| j.kid.as_deref() == Some(kid)),
                None => !k.keys.is_empty(),
            };
            (
                k.fetched.is_some(),
                knows,
                k.fetched.is_some_and(|t| t.elapsed() > KEYS_MAX_AGE),
            )
        };
        if knows_kid {
            if old {
                self.refresh_in_background();
            }
            return Ok(());
        }
        let fetched_before = self.keys.read().fetched;
        let _guard = self.fetching.lock().await;
        // Another request may have fetched while this one waited: its keys are the newest.
        {
            let k = self.keys.read();
            if k.fetched.is_some() && k.fetched != fetched_before {
                return Ok(());
            }
            if k.failed.is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE) {
                return Err(self.unavailable("it did not answer a moment ago"));
            }
            if have_keys
                && k.refetched
                    .is_some_and(|t| t.elapsed() < self.options.refetch_cooldown)
            {
                // The key set was fetched again lately: the key id is made up.
                return Ok(());
            }
        }
        if have_keys {
            self.keys.write().refetched = Some(Instant::now());
        }
        match self.refresh().await {
            Ok(()) => Ok(()),
            Err(e) if have_keys => {
                tracing::warn!(error = %e, "could not fetch the OIDC issuer's keys again");
                Ok(())
            }
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    fn unavailable(&self, why: &str) -> OidcError {
        OidcError::Unavailable(format!(
            "the OIDC issuer {} cannot be reached to check the token ({why}); try again shortly",
            self.options.issuer
        ))
    }

    /// Fetches an hour-old key set again while requests go on using it.
    fn refresh_in_background(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let Ok(_guard) = me.fetching.try_lock() else {
                return;
            };
            let due = {
                let k = me.keys.read();
                k.fetched.is_some_and(|t| t.elapsed() > KEYS_MAX_AGE)
                    && k.failed.is_none_or(|t| t.elapsed() >= RETRY_AFTER_FAILURE)
            };
            if due && let Err(e) = me.refresh().await {
                tracing::warn!(error = %e, "the hourly fetch of the OIDC issuer's keys failed");
            }
        });
    }

    /// Fetches the discovery document (when its key-set address is not known yet) and the
    /// key set. The caller holds `fetching`.
    async fn refresh(&self) -> Result<(), String> {
        let result = self.fetch().await;
        let mut k = self.keys.write();
        match result {
            Ok((uri, keys)) => {
                k.jwks_uri = Some(uri);
                k.keys = keys;
                k.fetched = Some(Instant::now());
                k.failed = None;
                Ok(())
            }
            Err(e) => {
                k.failed = Some(Instant::now());
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<(String, Vec<Jwk>), String> {
        let known = self.keys.read().jwks_uri.clone();
        let uri = match known {
            Some(uri) => uri,
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.options.issuer.trim_end_matches('/')
                );
                let body = get(&self.http, &url).await?;
                let d: Discovery = serde_json::from_slice(&body)
                    .map_err(|e| format!("{url} is not a discovery document: {e}"))?;
                if d.issuer != self.options.issuer {
                    return Err(format!(
                        "{url} names the issuer {:?}, not {:?}",
                        d.issuer, self.options.issuer
                    ));
                }
                d.jwks_uri
            }
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let keys = fetch_keys(&self.http, &uri).await?;
        Ok((uri, keys))
    }
}

async fn fetch_keys(http: &reqwest::Client, uri: &str) -> Result<Vec<Jwk>, String> {
    let body = get(http, uri).await?;
    jwt::parse_jwks(&body)
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: {}", response.status()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok(body.to_vec())
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
