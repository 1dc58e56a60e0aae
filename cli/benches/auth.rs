//! Authentication's cost (issue 19), against real `floe serve` processes:
//!
//! - **loadTable with a token** (a reader's `floe_pat_`, the checked-token cache warm) on a
//!   server with `--auth required`, against the same table on a server with auth off, in
//!   the same run: wrk, 16 connections, rounds alternating between the two;
//! - **the cold check** of a token (a meta read and a keyed BLAKE3), timed in process on a
//!   catalog over a real sled store;
//! - **the cold check of an OIDC token**: a JWT's signature and claims checked (RS256 with
//!   a 2048-bit key, ES256 on P-256), timed in process with the server's own code.
//!
//! `cargo bench -p floe --bench auth`.

mod support;

use std::time::Instant;

use floe_catalog::{ADMIN, Catalog, Principal};
use support::server::Server;
use support::wrk::{self, Load};
use support::{Row, Samples, Scale, machine_notes, us};

const POLICY: &str = "[roles.reader]\nrules = [{ refs = [\"**\"], allow = [\"read\"] }]\n[principals]\nalice = [\"reader\"]\n";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
const PATH: &str = "/iceberg/v1/main/namespaces/db/tables/t";

fn main() {
    let div = support::scale_divisor();
    let s = Scale(div);
    let seconds = s.secs(6);
    let rounds = if div == 1 { 5 } else { 1 };
    wrk::ensure();
    let root = support::bench_root();
    println!(
        "==== floe authentication (issue 19): loadTable with a token vs auth off{} ====",
        if div == 1 {
            ""
        } else {
            " (NOT for the record)"
        }
    );
    machine_notes(root.path());
    let policy = root.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let admin_file = root.path().join("admin-token");
    std::fs::write(&admin_file, ADMIN_TOKEN).unwrap();
    let csv = root.path().join("t.csv");
    let mut text = String::from("id,name\n");
    for i in 0..1000 {
        text.push_str(&format!("{i},n{i}\n"));
    }
    std::fs::write(&csv, text).unwrap();

    let off = Server::start(
        &root.path().join("off"),
        &root.path().join("off.stderr"),
        &[],
    );
    let on = Server::start(
        &root.path().join("on"),
        &root.path().join("on.stderr"),
        &[
            "--auth",
            "required",
            "--policy",
            policy.to_str().unwrap(),
            "--admin-token-file",
            admin_file.to_str().unwrap(),
        ],
    );
    let config = root.path().join("cli");
    for (server, token) in [(&off, None), (&on, Some(ADMIN_TOKEN))] {
        let mut args = vec![];
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        let with = |more: &[&str]| {
            let mut all = args.clone();
            all.extend_from_slice(more);
            support::floe_cli(&server.base, &config, &all)
        };
        with(&["namespace", "create", "db", "--ref", "main"]);
        with(&["import", csv.to_str().unwrap(), "--table", "db.t"]);
    }
    let made = support::floe_cli(
        &on.base,
        &config,
        &[
            "--token",
            ADMIN_TOKEN,
            "token",
            "create",
            "--principal",
            "alice",
        ],
    );
    let header = format!("Authorization: Bearer {}", made["token"].as_str().unwrap());

    // Rounds alternate which server goes first, so that neither gains from its place.
    let off_load = Load::get(&off.base, PATH, 16, seconds).server(off.pid());
    let on_load = Load::get(&on.base, PATH, 16, seconds)
        .server(on.pid())
        .header(&header);
    let (mut plain, mut authed) = (wrk::Series(Vec::new()), wrk::Series(Vec::new()));
    for round in 0..rounds {
        if round % 2 == 0 {
            plain.0.push(wrk::run(off_load));
            authed.0.push(wrk::run(on_load));
        } else {
            authed.0.push(wrk::run(on_load));
            plain.0.push(wrk::run(off_load));
        }
    }
    let cpu_per = |s: &wrk::Series| {
        let c = s.cpu();
        c.server.as_secs_f64() * 1e6 / c.requests.max(1) as f64
    };
    println!(
        "server CPU per request: auth off {:.1} µs, with a token {:.1} µs",
        cpu_per(&plain),
        cpu_per(&authed)
    );
    // Paired by round (the two loads of a round run back to back): the median of the
    // rounds' ratios, robust to the machine's drift across rounds.
    let mut paired: Vec<f64> = authed
        .0
        .iter()
        .zip(&plain.0)
        .map(|(a, p)| a.rate() / p.rate())
        .collect();
    paired.sort_by(f64::total_cmp);
    let ratio = paired[paired.len() / 2];
    let bytes = |s: &wrk::Series| {
        s.0.iter()
            .map(wrk::Run::bytes_per_answer)
            .max()
            .unwrap_or(0)
    };
    println!(
        "bytes per answer: auth off {}, with a token {}; per round: off {:?}, on {:?}",
        bytes(&plain),
        bytes(&authed),
        plain.0.iter().map(|r| r.rate() as u64).collect::<Vec<_>>(),
        authed.0.iter().map(|r| r.rate() as u64).collect::<Vec<_>>()
    );
    println!(
        "loadTable: auth off {:.0} req/s, with a token {:.0} req/s; per-round ratios {paired:.3?}, median {ratio:.3}x",
        plain.rate(),
        authed.rate()
    );
    let mut figures = vec![
        Row::new(
            "loadTable with a token, the checked-token cache warm (wrk, 16 connections)",
            format!(
                "{:.0} req/s, p50 {} (median of {} rounds' ratios: {paired:.3?})",
                authed.rate(),
                us(authed.p50()),
                paired.len()
            ),
        )
        .baseline(
            format!(
                "auth off, same table, same run: {:.0} req/s, p50 {}",
                plain.rate(),
                us(plain.p50())
            ),
            ratio,
        )
        .budget("cost <= 5% (>= 0.95x)", ratio >= 0.95)
        .cpu(authed.cpu())
        .note(format!(
            "the server's CPU per request: {:.1} µs with a token, {:.1} µs with auth off ({:+.1}%)",
            cpu_per(&authed),
            cpu_per(&plain),
            (cpu_per(&authed) / cpu_per(&plain) - 1.0) * 100.0
        )),
    ];

    // The cold path: a token checked against the store, in process.
    let store_dir = root.path().join("cold");
    let backend = std::sync::Arc::new(floe_commits::SledBackend::open(&store_dir).unwrap());
    let store =
        floe_commits::Store::open(backend, std::sync::Arc::new(floe_commits::SystemClock)).unwrap();
    let catalog = Catalog::new(std::sync::Arc::new(store))
        .with_rules(Some(POLICY))
        .unwrap();
    let admin = Principal::named(ADMIN).with_roles([ADMIN.to_owned()]);
    let token = catalog
        .create_token(&admin, "alice", Vec::new(), None)
        .unwrap()
        .token;
    let checks = Samples::new(
        (0..s.n(2_000, 50))
            .map(|_| {
                let started = Instant::now();
                let who = catalog.authenticate(&token).unwrap();
                let took = started.elapsed();
                assert_eq!(who.map(|p| p.name().to_owned()).as_deref(), Some("alice"));
                took
            })
            .collect(),
    );
    println!(
        "cold token check p50 {}, p99 {}",
        us(checks.p50()),
        us(checks.pct(0.99))
    );
    figures.push(
        Row::new(
            "A floe token checked cold (the store's meta read and a keyed BLAKE3)",
            format!("p50 {}, p99 {}", us(checks.p50()), us(checks.pct(0.99))),
        )
        .note("reported, no budget: once checked, a token is served from the cache for 2 s"),
    );
    for (alg, signer) in [("RS256", jwt_signer::rsa()), ("ES256", jwt_signer::ec())] {
        let (token, jwks) = signer;
        let keys = floe_rest::auth::jwt::parse_jwks(jwks.as_bytes()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let expect = floe_rest::auth::jwt::Expect {
            issuer: "https://idp.example",
            audience: "floe",
            now,
        };
        let checks = Samples::new(
            (0..s.n(2_000, 50))
                .map(|_| {
                    let started = Instant::now();
                    let verified = floe_rest::auth::jwt::verify(&token, &keys, &expect);
                    let took = started.elapsed();
                    assert_eq!(verified.unwrap().claims["sub"], "alice");
                    took
                })
                .collect(),
        );
        println!(
            "cold {alg} JWT check p50 {}, p99 {}",
            us(checks.p50()),
            us(checks.pct(0.99))
        );
        figures.push(
            Row::new(
                format!("An OIDC token ({alg}) checked cold: signature and claims"),
                format!("p50 {}, p99 {}", us(checks.p50()), us(checks.pct(0.99))),
            )
            .note("reported, no budget: once checked, a JWT is served from the cache until it expires"),
        );
    }
    let _ = off.stop();
    let _ = on.stop();
    support::report::print("authentication (issue 19)", &figures, div);
}

/// Signed tokens for the cold JWT check: (token, its key set).
mod jwt_signer {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};

    fn claims() -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        serde_json::json!({"iss": "https://idp.example", "aud": "floe", "sub": "alice",
            "exp": now + 3600, "groups": ["engineers"]})
        .to_string()
    }

    fn message(alg: &str) -> String {
        let header = serde_json::json!({"alg": alg, "kid": "k1", "typ": "JWT"}).to_string();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims())
        )
    }

    pub fn rsa() -> (String, String) {
        let pem = include_str!("../tests/data/oidc-test-rsa-key.pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let pair = RsaKeyPair::from_pkcs8(&STANDARD.decode(body).unwrap()).unwrap();
        let m = message("RS256");
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            m.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let parts: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
        let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "k1",
            "n": URL_SAFE_NO_PAD.encode(parts.n), "e": URL_SAFE_NO_PAD.encode(parts.e)}]});
        (
            format!("{m}.{}", URL_SAFE_NO_PAD.encode(sig)),
            jwks.to_string(),
        )
    }

    pub fn ec() -> (String, String) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let m = message("ES256");
        let sig = pair.sign(&rng, m.as_bytes()).unwrap();
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]});
        (
            format!("{m}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
            jwks.to_string(),
        )
    }
}
