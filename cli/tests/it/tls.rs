//! `floe serve --tls-cert/--tls-key` (issue 19): HTTPS with a certificate the tests keep
//! (self-signed for 127.0.0.1, made with `openssl req -x509`); the CLI trusts it through
//! SSL_CERT_FILE; plain HTTP to the port gets nothing; a server that would carry tokens in
//! clear text off loopback refuses to start unless it serves HTTPS (or is told it is behind
//! a TLS proxy).

use std::process::Command;

use crate::harness::{Server, serve_command};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls-test-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls-test-key.pem");
const ADMIN: &str = "admin-token-0123456789abcdef";

fn trusting_agent() -> ureq::Agent {
    let pem = std::fs::read(CERT).unwrap();
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(Result::ok)
        .filter_map(|i| match i {
            ureq::tls::PemItem::Certificate(c) => Some(c.to_owned()),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .build()
        .into()
}

#[test]
fn floe_serves_https_and_the_cli_trusts_the_certificate_it_is_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve_command(
        dir.path(),
        &["--auth", "required", "--tls-cert", CERT, "--tls-key", KEY],
    );
    command.env("FLOE_ADMIN_TOKEN", ADMIN);
    let server = Server::start_with(&mut command);
    let url = format!("https://{}", server.addr);

    let agent = trusting_agent();
    let mut health = agent.get(format!("{url}/health")).call().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let _ = health.body_mut().read_to_string();
    let refused = agent.get(format!("{url}/api/v1/refs")).call().unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    // Plain HTTP to the TLS port is not served.
    let plain = ureq::get(format!("http://{}/health", server.addr)).call();
    assert!(plain.is_err(), "{plain:?}");
    // A client that does not trust the certificate gets no answer.
    let untrusting = ureq::get(format!("{url}/health")).call();
    assert!(untrusting.is_err(), "{untrusting:?}");

    let cli = |extra_env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["--json", "branch", "list"])
            .env("FLOE_SERVER", &url)
            .env("FLOE_TOKEN", ADMIN)
            .env("FLOE_CONFIG_DIR", dir.path().join("cli"))
            .env_remove("SSL_CERT_FILE")
            .envs(extra_env.iter().copied())
            .output()
            .unwrap()
    };
    let trusted = cli(&[("SSL_CERT_FILE", CERT)]);
    let out = String::from_utf8_lossy(&trusted.stdout);
    assert!(
        trusted.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(out.contains("\"main\""), "{out}");
    let untrusted = cli(&[]);
    assert!(!untrusted.status.success());
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(!err.contains(ADMIN), "the token is never printed: {err}");
}

#[test]
fn tokens_in_clear_text_off_loopback_are_refused_at_start_unless_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("FLOE_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(!plain.status.success());
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(err.contains("--tls-cert"), "{err}");

    let command = serve_command(dir.path(), &["--tls-cert", CERT, "--tls-key", KEY]);
    // serve_command binds loopback; ask for every address instead.
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().replace("127.0.0.1:0", "0.0.0.0:0"))
        .collect();
    let mut command = Command::new(command.get_program());
    command.args(&args).env("FLOE_ADMIN_TOKEN", ADMIN);
    let server = Server::start_with(&mut command);
    let port = server.addr.rsplit(':').next().unwrap();
    let mut health = trusting_agent()
        .get(format!("https://127.0.0.1:{port}/health"))
        .call()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let _ = health.body_mut().read_to_string();
}
