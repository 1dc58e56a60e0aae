//! An OpenID Connect issuer inside the tests, on loopback: the discovery document, a key
//! set (counting its fetches; its keys rotate on demand) and a token endpoint for the
//! client-credentials grant with both client-authentication styles (HTTP Basic and the
//! form's `client_id`/`client_secret`). Tokens are signed for real: RS256 with a test key
//! kept beside the tests, ES256 with keys made at start.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

/// The RSA test key (PKCS#8 PEM), made with `openssl genpkey -algorithm RSA`.
const RSA_PEM: &str = include_str!("../data/oidc-test-rsa-key.pem");

/// The audience the tests' floe servers expect.
pub const AUDIENCE: &str = "floe-tests";

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

struct SigningKey {
    kid: String,
    key: Key,
}

impl SigningKey {
    fn alg(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "RS256",
            Key::Ec(_) => "ES256",
        }
    }

    fn jwk(&self) -> Value {
        match &self.key {
            Key::Rsa(pair) => {
                let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
                let (n, e) = (parts.n, parts.e);
                json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                       "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)})
            }
            Key::Ec(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
                       "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                       "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
            }
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            Key::Rsa(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .unwrap();
                sig
            }
            Key::Ec(pair) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
        }
    }
}

fn rsa_key(kid: &str) -> SigningKey {
    let body: String = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).unwrap();
    SigningKey {
        kid: kid.to_owned(),
        key: Key::Rsa(RsaKeyPair::from_pkcs8(&der).unwrap()),
    }
}

fn ec_key(kid: &str) -> SigningKey {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    SigningKey {
        kid: kid.to_owned(),
        key: Key::Ec(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap()),
    }
}

/// A client of the token endpoint: its secret and the groups its tokens carry.
pub struct Client {
    pub id: &'static str,
    pub secret: &'static str,
    pub groups: &'static [&'static str],
}

struct Issuer {
    url: String,
    /// The key set served; new tokens are signed with the first key.
    keys: Mutex<Vec<SigningKey>>,
    jwks_fetches: AtomicUsize,
    clients: Vec<Client>,
}

/// A running issuer; stops with its runtime when dropped.
pub struct Idp {
    pub url: String,
    issuer: Arc<Issuer>,
    _runtime: tokio::runtime::Runtime,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A loopback port nothing listens on (bound, then let go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Idp {
    /// An issuer on a free port, signing with the RSA key `rsa-1` (an EC key `ec-1` is in
    /// its set too).
    pub fn start(clients: Vec<Client>) -> Idp {
        Idp::start_on(free_port(), clients)
    }

    pub fn start_on(port: u16, clients: Vec<Client>) -> Idp {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let issuer = Arc::new(Issuer {
            url: url.clone(),
            keys: Mutex::new(vec![rsa_key("rsa-1"), ec_key("ec-1")]),
            jwks_fetches: AtomicUsize::new(0),
            clients,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(issuer.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        Idp {
            url,
            issuer,
            _runtime: runtime,
        }
    }

    /// Times the key set was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.issuer.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Replaces the key set by one new EC key, `kid`, which signs from now on.
    pub fn rotate(&self, kid: &str) {
        *self.issuer.keys.lock().unwrap() = vec![ec_key(kid)];
    }

    /// Claims of a good token for `sub` (valid for an hour).
    pub fn claims(&self, sub: &str) -> Value {
        json!({"iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 3600})
    }

    /// A token with `claims`, signed by the current key (`alg` and `kid` as it says).
    pub fn token(&self, claims: &Value) -> String {
        self.issuer.sign(claims, None)
    }

    /// A token signed by the key `kid` (which must be in the set) but naming `header_kid`.
    pub fn token_naming(&self, claims: &Value, header_kid: &str) -> String {
        self.issuer.sign(claims, Some(header_kid))
    }

    /// A token with a header of one's choosing and `signature` bytes (forgeries).
    pub fn forged(header: &Value, claims: &Value, signature: &[u8]) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The HS256 forgery: the token "signed" with the issuer's RSA public key (its JWK's
    /// modulus, and the whole JWK text) as the HMAC secret.
    pub fn hmac_with_public_key(&self, claims: &Value) -> Vec<String> {
        let keys = self.issuer.keys.lock().unwrap();
        let jwk = keys[0].jwk();
        let secrets = [
            jwk.to_string().into_bytes(),
            jwk["n"].as_str().unwrap_or("").as_bytes().to_vec(),
        ];
        let header = json!({"alg": "HS256", "kid": keys[0].kid, "typ": "JWT"});
        secrets
            .iter()
            .map(|secret| {
                let message = format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                );
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
                let tag = ring::hmac::sign(&key, message.as_bytes());
                format!("{message}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
            })
            .collect()
    }
}

impl Issuer {
    fn sign(&self, claims: &Value, header_kid: Option<&str>) -> String {
        let keys = self.keys.lock().unwrap();
        let key = &keys[0];
        let header = json!({"alg": key.alg(), "typ": "JWT", "kid": header_kid.unwrap_or(&key.kid)});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = key.sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Response {
    axum::Json(json!({
        "issuer": issuer.url,
        "jwks_uri": format!("{}/jwks", issuer.url),
        "token_endpoint": format!("{}/token", issuer.url),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
    .into_response()
}

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Response {
    issuer.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = issuer
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(SigningKey::jwk)
        .collect();
    axum::Json(json!({ "keys": keys })).into_response()
}

/// `application/x-www-form-urlencoded` fields.
fn form(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The client-credentials grant: the client authenticates by HTTP Basic or by the form's
/// fields; the token's subject is the client id, its `groups` the client's.
async fn token(State(issuer): State<Arc<Issuer>>, headers: HeaderMap, body: String) -> Response {
    let fields = form(&body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(i, s)| (i.to_owned(), s.to_owned()))
        });
    let (id, secret) = match basic.or_else(|| Some((field("client_id")?, field("client_secret")?)))
    {
        Some(pair) => pair,
        None => return oauth_error("invalid_client", "no client credentials"),
    };
    if field("grant_type").as_deref() != Some("client_credentials") {
        return oauth_error("unsupported_grant_type", "only client_credentials");
    }
    let Some(client) = issuer
        .clients
        .iter()
        .find(|c| c.id == id && c.secret == secret)
    else {
        return oauth_error("invalid_client", "unknown client or wrong secret");
    };
    let claims = json!({"iss": issuer.url, "aud": AUDIENCE, "sub": client.id,
        "groups": client.groups, "iat": now(), "exp": now() + 3600});
    axum::Json(json!({
        "access_token": issuer.sign(&claims, None),
        "token_type": "Bearer",
        "expires_in": 3600,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }))
    .into_response()
}

fn oauth_error(code: &str, description: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}
