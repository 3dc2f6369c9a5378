//! TLS on either side of kaos, with rustls (ring; no OpenSSL in the binary).
//!
//! - Towards clients (`--tls-cert`, `--tls-key`, and `--tls-client-ca` for mutual TLS), every
//!   kaos port speaks TLS. The server config sits in an `ArcSwap`: SIGHUP re-reads the files and
//!   swaps it, so new connections get the new certificate and open ones are not dropped.
//! - Towards brokers (`--upstream-tls`), kaos verifies each broker against `--upstream-ca` (or
//!   the system roots) under the host name it dials, and may present `--upstream-cert`.
//!
//! The data path is generic over its two streams, so a plaintext connection runs code with no
//! TLS in it at all; see `shard::serve`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::Config;

/// Why TLS could not be set up: always names the file or the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {why}", path.display())]
    File { what: &'static str, path: PathBuf, why: String },
    #[error("{what} {} holds no {expected}", path.display())]
    Empty { what: &'static str, path: PathBuf, expected: &'static str },
    #[error("the system trust store has no certificate kaos can use (give --upstream-ca)")]
    NoSystemRoots,
    #[error("{0}")]
    Rustls(String),
}

impl From<rustls::Error> for TlsError {
    fn from(error: rustls::Error) -> TlsError {
        TlsError::Rustls(error.to_string())
    }
}

/// The files TLS towards clients is made of, kept to re-read them on SIGHUP.
#[derive(Debug, Clone)]
struct ServerFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// TLS towards clients: the current server config, swapped whole on reload.
pub struct ClientTls {
    files: ServerFiles,
    config: ArcSwap<ServerConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// The config for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// Re-reads the certificate, key and client CA; on error the old config stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.config.store(Arc::new(server_config(&self.files)?));
        Ok(())
    }
}

/// TLS on both sides, as the flags ask for it.
#[derive(Debug, Default)]
pub struct Tls {
    pub clients: Option<ClientTls>,
    pub upstream: Option<Arc<ClientConfig>>,
}

impl Tls {
    /// Reads every file the flags name, so that a bad one stops start-up with its path.
    pub fn from_config(config: &Config) -> Result<Tls, TlsError> {
        let clients = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let files = ServerFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: config.tls_client_ca.clone(),
                };
                let config = ArcSwap::from_pointee(server_config(&files)?);
                Some(ClientTls { files, config })
            }
            _ => None,
        };
        let upstream = if config.upstream_tls {
            let identity = match (&config.upstream_cert, &config.upstream_key) {
                (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
                _ => None,
            };
            Some(Arc::new(client_config(
                config.upstream_ca.as_deref(),
                identity,
                config.upstream_tls_insecure,
            )?))
        } else {
            None
        };
        Ok(Tls { clients, upstream })
    }
}

/// The name to verify a broker under, from the `host:port` kaos dials.
pub fn server_name(address: &str) -> Result<ServerName<'static>, TlsError> {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| TlsError::Rustls(format!("bad broker host name '{host}': {e}")))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(files: &ServerFiles) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let roots = roots_from(ca, "--tls-client-ca")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Rustls(format!("--tls-client-ca {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = certificates(&files.cert, "--tls-cert")?;
    let key = private_key(&files.key, "--tls-key")?;
    builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(format!("--tls-cert/--tls-key {}: {e}", files.cert.display())))
}

fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    insecure: bool,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = if insecure {
        let algorithms = provider().signature_verification_algorithms;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(algorithms)))
    } else {
        let roots = match ca {
            Some(ca) => roots_from(ca, "--upstream-ca")?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    match identity {
        Some((cert, key)) => {
            let chain = certificates(cert, "--upstream-cert")?;
            let key = private_key(key, "--upstream-key")?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                TlsError::Rustls(format!("--upstream-cert/--upstream-key {}: {e}", cert.display()))
            })
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |why: String| TlsError::File { what, path: path.to_owned(), why };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Empty { what, path: path.to_owned(), expected: "PEM certificate" });
    }
    Ok(chain)
}

fn private_key(path: &Path, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsError::Empty { what, path: path.to_owned(), expected: "PEM private key" }
        }
        other => TlsError::File { what, path: path.to_owned(), why: other.to_string() },
    })
}

fn roots_from(path: &Path, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path, what)? {
        roots.add(certificate).map_err(|e| TlsError::File {
            what,
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}

/// `--upstream-tls-insecure`: accepts any broker certificate (signatures are still checked, so
/// the handshake itself is sound). For lab clusters only; kaos warns at start.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_names_come_from_the_address_kaos_dials() {
        assert_eq!(
            server_name("kafka-1.example:9093").unwrap(),
            ServerName::try_from("kafka-1.example").unwrap()
        );
        assert!(matches!(server_name("127.0.0.1:9093").unwrap(), ServerName::IpAddress(_)));
        assert!(matches!(server_name("[::1]:9093").unwrap(), ServerName::IpAddress(_)));
    }

    #[test]
    fn missing_and_empty_files_are_named() {
        let files = ServerFiles {
            cert: PathBuf::from("/nonexistent/kaos-cert.pem"),
            key: PathBuf::from("/nonexistent/kaos-key.pem"),
            client_ca: None,
        };
        let error = server_config(&files).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/kaos-cert.pem") && error.contains("--tls-cert"), "{error}");
        let empty = std::env::temp_dir().join(format!("kaos-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = client_config(Some(&empty), None, false).unwrap_err().to_string();
        assert!(error.contains("--upstream-ca") && error.contains("holds no PEM certificate"), "{error}");
        let _ = std::fs::remove_file(empty);
    }
}
