//! Tokens floe issues (issue 19): `floe_pat_<id>_<secret>`, the secret 256 random bits,
//! shown once. The meta keyspace keeps `auth/token/<id>` with the principal, its roles, who
//! made it, when, its expiry and a BLAKE3 of the secret keyed by `auth/token-key` (made
//! on first start from the OS's randomness); never the secret. Revoking deletes the entry,
//! so every server refuses it at once. The policy document is kept beside them.

use serde::{Deserialize, Serialize};

use super::policy::{PolicyDoc, Rules};
use super::{Action, Principal, Target};
use crate::Catalog;
use crate::error::{CatalogError, CatalogResult};

/// The bootstrap principal (`FLOE_ADMIN_TOKEN`), who has every permission.
pub const ADMIN: &str = "admin";

const TOKEN_PREFIX: &str = "floe_pat_";
const RECORD_PREFIX: &str = "auth/token/";
const KEY: &[u8] = b"auth/token-key";
const POLICY: &[u8] = b"auth/policy";
const PAGE_KEY: &[u8] = b"auth/page-key";
use crate::limits::{NAME_BYTES_MAX, TOKENS_MAX};

/// A token as kept (its secret only as a keyed hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    id: String,
    principal: String,
    roles: Vec<String>,
    hash: String,
    created_by: String,
    created_ms: i64,
    #[serde(default)]
    expires_ms: Option<i64>,
}

/// A token as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub principal: String,
    pub roles: Vec<String>,
    pub created_by: String,
    pub created_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

/// A token just made: the only time its value is seen.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub info: TokenInfo,
    pub token: String,
}

impl From<&Stored> for TokenInfo {
    fn from(s: &Stored) -> TokenInfo {
        TokenInfo {
            id: s.id.clone(),
            principal: s.principal.clone(),
            roles: s.roles.clone(),
            created_by: s.created_by.clone(),
            created_ms: s.created_ms,
            expires_ms: s.expires_ms,
        }
    }
}

fn random<const N: usize>() -> CatalogResult<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| CatalogError::Invalid(format!("the system has no randomness: {e}")))?;
    Ok(bytes)
}

fn invalid(what: &str) -> impl Fn(serde_json::Error) -> CatalogError + '_ {
    move |e| CatalogError::Invalid(format!("{what} does not parse: {e}"))
}

impl Catalog {
    /// Authentication on: the token key exists (made now on first start), and the policy
    /// in force is the stored one, seeded from `seed` when none is stored yet.
    pub fn with_rules(mut self, seed: Option<&str>) -> CatalogResult<Catalog> {
        if self.store.meta_get(KEY)?.is_none() {
            let key = random::<32>()?;
            // Only if still absent: two servers starting at once keep one key.
            self.store.meta_cas(KEY, None, Some(&key))?;
        }
        let doc = match self.store.meta_get(POLICY)? {
            Some(text) => PolicyDoc::parse(&String::from_utf8_lossy(&text))
                .map_err(|e| CatalogError::Invalid(format!("the stored {e}")))?,
            None => match seed {
                Some(text) => {
                    let doc =
                        PolicyDoc::parse(text).map_err(|e| CatalogError::Invalid(e.to_string()))?;
                    self.store.meta_put(POLICY, text.as_bytes())?;
                    doc
                }
                None => PolicyDoc::default(),
            },
        };
        let rules = std::sync::Arc::new(Rules::new(doc));
        self.policy = rules.clone();
        self.rules = Some(rules);
        Ok(self)
    }

    /// Whether `principal` holds `manage` on the ref `name` (what a run that reaches past
    /// its workers' confinement needs).
    pub fn may_manage(&self, principal: &Principal, name: &floe_commits::RefName) -> bool {
        self.may(principal, crate::Action::AssignRef, name)
    }

    /// Says run workers are confined (the server probed it at start): `run` then starts
    /// runs, where otherwise only `manage` does.
    pub fn with_confined_runs(self) -> Catalog {
        if let Some(rules) = &self.rules {
            rules.confine_runs();
        }
        self
    }

    /// The key page tokens are signed with: made once, kept in meta (every server signs
    /// alike), then held in memory.
    pub(crate) fn page_key(&self) -> CatalogResult<[u8; 32]> {
        if let Some(key) = self.page_key.get() {
            return Ok(*key);
        }
        if self.store.meta_get(PAGE_KEY)?.is_none() {
            let key = random::<32>()?;
            self.store.meta_cas(PAGE_KEY, None, Some(&key))?;
        }
        let stored = self.store.meta_get(PAGE_KEY)?.unwrap_or_default();
        // Held in memory for every later request: only once it is durable.
        self.store.durable_now()?;
        let key: [u8; 32] = stored
            .as_ref()
            .try_into()
            .map_err(|_| CatalogError::Invalid("the stored page key is damaged".to_owned()))?;
        Ok(*self.page_key.get_or_init(|| key))
    }

    /// Whether the catalog keeps a policy (a `--policy` seed then changes nothing).
    pub fn policy_stored(&self) -> CatalogResult<bool> {
        Ok(self.store.meta_get(POLICY)?.is_some())
    }

    /// Whether authentication was ever on for this catalog (its token key exists).
    pub fn auth_was_on(&self) -> CatalogResult<bool> {
        Ok(self.store.meta_get(KEY)?.is_some())
    }

    /// Whether the policy in force defines `role` (or it is the built-in `admin`).
    pub fn policy_defines(&self, role: &str) -> bool {
        role == super::ADMIN
            || self
                .rules
                .as_ref()
                .is_some_and(|r| r.current().roles.contains_key(role))
    }

    fn manage(&self, principal: &Principal) -> CatalogResult<()> {
        self.authorize(principal, Action::Manage, Target::default())
    }

    fn token_key(&self) -> CatalogResult<[u8; 32]> {
        let key = self.store.meta_get(KEY)?.ok_or_else(|| {
            CatalogError::Unsupported(
                "authentication is off on this server (floe serve --auth required)".to_owned(),
            )
        })?;
        key.as_ref()
            .try_into()
            .map_err(|_| CatalogError::Invalid("the stored token key is damaged".to_owned()))
    }

    /// Makes a token for `for_principal` with `roles`, valid until `expires_ms` if given.
    pub fn create_token(
        &self,
        principal: &Principal,
        for_principal: &str,
        roles: Vec<String>,
        expires_ms: Option<i64>,
    ) -> CatalogResult<NewToken> {
        self.manage(principal)?;
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= NAME_BYTES_MAX
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        };
        if !valid(for_principal) || roles.iter().any(|r| !valid(r)) {
            return Err(CatalogError::Invalid(format!(
                "a principal or role is 1 to {NAME_BYTES_MAX} letters, digits and . _ - @ (got {for_principal:?} with roles {roles:?})"
            )));
        }
        if expires_ms.is_some_and(|t| t <= self.now_ms()) {
            return Err(CatalogError::Invalid(
                "the expiry is in the past".to_owned(),
            ));
        }
        if self
            .store
            .meta_scan(RECORD_PREFIX.as_bytes(), None, TOKENS_MAX)?
            .len()
            >= TOKENS_MAX
        {
            return Err(CatalogError::Invalid(format!(
                "the catalog holds {TOKENS_MAX} tokens, the most it may; revoke some first"
            )));
        }
        let id = hex::encode(random::<8>()?);
        let secret = hex::encode(random::<32>()?);
        let hash = blake3::keyed_hash(&self.token_key()?, secret.as_bytes());
        let stored = Stored {
            id: id.clone(),
            principal: for_principal.to_owned(),
            roles,
            hash: hash.to_hex().to_string(),
            created_by: principal.name().to_owned(),
            created_ms: self.now_ms(),
            expires_ms,
        };
        let bytes =
            serde_json::to_vec(&stored).map_err(|e| CatalogError::Invalid(e.to_string()))?;
        self.store
            .meta_put(format!("{RECORD_PREFIX}{id}").as_bytes(), &bytes)?;
        Ok(NewToken {
            info: TokenInfo::from(&stored),
            token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        })
    }

    /// Every token (never its value).
    pub fn list_tokens(&self, principal: &Principal) -> CatalogResult<Vec<TokenInfo>> {
        self.manage(principal)?;
        self.store
            .meta_scan(RECORD_PREFIX.as_bytes(), None, TOKENS_MAX)?
            .iter()
            .map(|(_, v)| {
                let s: Stored = serde_json::from_slice(v).map_err(invalid("a token record"))?;
                Ok(TokenInfo::from(&s))
            })
            .collect()
    }

    /// Revokes token `id` on every server at once. False when there was none.
    pub fn revoke_token(&self, principal: &Principal, id: &str) -> CatalogResult<bool> {
        self.manage(principal)?;
        let key = format!("{RECORD_PREFIX}{id}");
        let Some(old) = self.store.meta_get(key.as_bytes())? else {
            return Ok(false);
        };
        Ok(self.store.meta_cas(key.as_bytes(), Some(&old), None)?)
    }

    /// The principal a token stands for, or `None` for a token that is not one of ours,
    /// revoked, expired or wrong.
    pub fn authenticate(&self, token: &str) -> CatalogResult<Option<Principal>> {
        let Some((id, secret)) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let Some(bytes) = self
            .store
            .meta_get(format!("{RECORD_PREFIX}{id}").as_bytes())?
        else {
            return Ok(None);
        };
        let stored: Stored = serde_json::from_slice(&bytes).map_err(invalid("a token record"))?;
        let given = blake3::keyed_hash(&self.token_key()?, secret.as_bytes());
        // `blake3::Hash` compares in constant time.
        let matches = blake3::Hash::from_hex(&stored.hash).is_ok_and(|h| h == given);
        if !matches || stored.expires_ms.is_some_and(|t| t <= self.now_ms()) {
            return Ok(None);
        }
        Ok(Some(
            Principal::named(stored.principal).with_roles(stored.roles),
        ))
    }

    /// The policy in force, as TOML.
    pub fn policy_text(&self, principal: &Principal) -> CatalogResult<String> {
        self.manage(principal)?;
        Ok(match self.store.meta_get(POLICY)? {
            Some(text) => String::from_utf8_lossy(&text).into_owned(),
            None => self
                .rules
                .as_ref()
                .map(|r| r.current().to_toml())
                .unwrap_or_default(),
        })
    }

    /// Replaces the policy with `text` (checked first: a document that does not parse
    /// changes nothing).
    pub fn set_policy(&self, principal: &Principal, text: &str) -> CatalogResult<()> {
        self.manage(principal)?;
        let Some(rules) = &self.rules else {
            return Err(CatalogError::Unsupported(
                "authentication is off on this server: there is no policy to set (floe serve --auth required)".to_owned(),
            ));
        };
        let doc = PolicyDoc::parse(text).map_err(|e| CatalogError::Invalid(e.to_string()))?;
        self.store.meta_put(POLICY, text.as_bytes())?;
        // Every request authorizes by it from now on: only once it is durable.
        self.store.durable_now()?;
        rules.replace(doc);
        Ok(())
    }
}
