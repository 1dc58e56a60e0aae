//! TLS to PostgreSQL, with rustls: `sslmode=require` in the store's URL encrypts every
//! connection and verifies the server's certificate and name against the system's roots
//! and the PEM file `PgOptions::ca` names (a private CA's certificate; or the server's own
//! self-signed one, if it is not marked as a CA).
//! `prefer` (the default) and `disable` connect without TLS. Unlike libpq's `require`, a
//! certificate that does not verify is refused: encryption to an unknown peer protects
//! nothing.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::backend::{BackendError, BackendResult};

/// Makes a TLS connection per new database connection, to the host it connects to.
#[derive(Clone)]
pub(super) struct MakeRustls {
    config: Arc<rustls::ClientConfig>,
}

impl MakeRustls {
    /// The system's roots, and those in `ca` (a PEM file) if given.
    pub(super) fn new(ca: Option<&Path>) -> BackendResult<MakeRustls> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        // The system's store may hold certificates rustls cannot use; they are skipped.
        roots.add_parsable_certificates(native.certs);
        if let Some(ca) = ca {
            let unreadable = |e: &dyn std::fmt::Display| {
                BackendError::read(format!(
                    "PostgreSQL: the CA file {} (--store-ca) is not readable PEM: {e}",
                    ca.display()
                ))
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .map_err(|e| unreadable(&e))?
                .collect::<Result<_, _>>()
                .map_err(|e| unreadable(&e))?;
            if certs.is_empty() {
                return Err(unreadable(&"it holds no certificate"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| unreadable(&e))?;
            }
        }
        if roots.is_empty() {
            return Err(BackendError::read(
                "PostgreSQL: sslmode=require, but the system has no CA certificates and no --store-ca was given: nothing to verify the server with",
            ));
        }
        // ring, as `floe serve --tls-cert` uses (no aws-lc-rs C build); ring has no
        // post-quantum key exchange, hence rustls's deprecation note.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BackendError::read(format!("PostgreSQL: TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // PostgreSQL 17's protocol name (required there for `sslnegotiation=direct`).
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustls {
            config: Arc::new(config),
        })
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<RustlsConnect> {
        if host.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "sslmode=require needs the server's host name (host=...) to check its certificate against; a unix socket is never encrypted (drop sslmode=require there)",
            ));
        }
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host} is not a name a certificate can be checked against: {e}"),
            )
        })?;
        Ok(RustlsConnect {
            name,
            config: self.config.clone(),
        })
    }
}

/// One connection's handshake, to `name`.
pub(super) struct RustlsConnect {
    name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
}

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Handshake<S>;

    fn connect(self, stream: S) -> Handshake<S> {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// An encrypted connection.
pub(super) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    /// No channel binding: the server's certificate is verified instead (SCRAM runs
    /// without `-PLUS`).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
