//! TLS to PostgreSQL: with `sslmode=require` in `--store` every connection is encrypted
//! and the server's certificate verified (against the system's roots and `--store-ca`), on
//! a cluster of the test's own listening on 127.0.0.1 with a certificate for `localhost`
//! and 127.0.0.1 (the one the HTTPS tests keep). A certificate nobody vouches for, or one
//! for another name, is refused with a message that says so.

use std::net::TcpListener;

use floe_commits::{PgOptions, PostgresBackend};

use crate::harness::Running;
use crate::pg_faults::PrivatePg;

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls-test-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tls-test-key.pem");

/// A cluster serving TLS on a free port of 127.0.0.1; the port.
fn tls_cluster() -> (PrivatePg, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut pg = PrivatePg::start_with(|pg| {
        let (cert, key) = (pg.dir().join("server.pem"), pg.dir().join("server.key"));
        std::fs::copy(CERT, &cert).unwrap();
        std::fs::copy(KEY, &key).unwrap();
        pg.own(&cert);
        pg.own(&key);
        format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert.display(),
            key.display()
        )
    });
    // Its own unix socket is named by the port too.
    pg.url = format!("{} port={port}", pg.url);
    (pg, port)
}

fn open(url: &str, ca: Option<&str>) -> Result<PostgresBackend, String> {
    let mut options = PgOptions::new(url);
    options.pool_size = 2;
    options.ca = ca.map(Into::into);
    PostgresBackend::open(&options).map_err(|e| e.message)
}

#[test]
fn sslmode_require_encrypts_and_verifies_the_servers_certificate() {
    let (pg, port) = tls_cluster();
    let url = format!("postgres://floe@localhost:{port}/postgres?sslmode=require");
    // Nobody vouches for the server's certificate: refused, saying why.
    let unknown = open(&url, None).unwrap_err();
    assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    // The certificate is good, but for another name.
    let other = format!(
        "host=floe.invalid hostaddr=127.0.0.1 port={port} user=floe dbname=postgres sslmode=require"
    );
    let wrong_name = open(&other, Some(CERT)).unwrap_err();
    assert!(
        wrong_name.contains("not valid for name \"floe.invalid\""),
        "{wrong_name}"
    );
    // A CA file that is not one is refused before any connection.
    let not_pem = open(&url, Some(KEY)).unwrap_err();
    assert!(not_pem.contains("--store-ca"), "{not_pem}");

    // Trusted: floe serves on it, and every connection it holds is encrypted.
    let ca = format!("--store-ca={CERT}");
    let server = Running::start_args(&["--store", &url, &ca]);
    let head = server.namespace("main", "secure");
    assert_eq!(server.head("main"), head);
    let connections = pg.psql(
        "SELECT count(*) FILTER (WHERE ssl), count(*) FROM pg_stat_ssl JOIN pg_stat_activity \
         USING (pid) WHERE usename = 'floe' AND client_addr IS NOT NULL",
    );
    let (encrypted, all) = connections.trim().split_once('|').unwrap();
    assert_ne!(all, "0", "floe holds connections over TCP");
    assert_eq!(encrypted, all, "every one of them encrypted");
    // Without sslmode=require, no TLS (the default, `prefer`, as before), and a CA file
    // given without it is refused rather than ignored.
    let plain_url = format!("postgres://floe@127.0.0.1:{port}/postgres");
    let plain = open(&plain_url, None);
    assert!(plain.is_ok(), "{:?}", plain.err());
    let unused = open(&plain_url, Some(CERT)).unwrap_err();
    assert!(unused.contains("add sslmode=require"), "{unused}");
}
