//! TLS on either side of kaos, with rustls (ring; no OpenSSL in the binary).
//!
//! - Towards clients (`--tls-cert`, `--tls-key`, and `--tls-client-ca` for mutual TLS), every
//!   kaos port speaks TLS. The server config sits in an `ArcSwap`: SIGHUP re-reads the files and
//!   swaps it, so new connections get the new certificate and open ones are not dropped.
//! - Towards brokers (`--upstream-tls`), kaos verifies each broker against `--upstream-ca` (or
//!   the system roots) under the host name it dials, and may present `--upstream-cert`.
//! - Certificates as Kafka's clients accept them: webpki (rustls's verifier) refuses a CA
//!   certificate as an end entity, which is what `openssl req -x509` makes (self-signed,
//!   CA:TRUE), while librdkafka (OpenSSL) and the Java client accept one that is itself among the
//!   trusted certificates. So does kaos ([`TrustedAsIs`]), brokers and `--tls-client-ca` clients
//!   alike: only when the certificate is, byte for byte, one of the trusted ones, and still
//!   within its validity period and (a broker) valid for the host kaos dialled.
//!
//! The data path is generic over its two streams, so a plaintext connection runs code with no
//! TLS in it at all; see `shard::serve`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    ServerConfig, SignatureScheme,
};

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
            let trusted = certificates(ca, "--tls-client-ca")?;
            let roots = roots_of(&trusted, ca, "--tls-client-ca")?;
            let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Rustls(format!("--tls-client-ca {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(Arc::new(TrustedAsIs { webpki, trusted }))
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
        let (roots, trusted) = match ca {
            Some(ca) => {
                let trusted = certificates(ca, "--upstream-ca")?;
                (roots_of(&trusted, ca, "--upstream-ca")?, trusted)
            }
            None => (system_roots()?, Vec::new()),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Rustls(format!("--upstream-ca: {e}")))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(TrustedAsIs { webpki, trusted }))
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

fn roots_of(
    trusted: &[CertificateDer<'static>],
    path: &Path,
    what: &'static str,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in trusted {
        roots.add(certificate.clone()).map_err(|e| TlsError::File {
            what,
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// webpki's verification, and a certificate that is itself one of `trusted` (byte for byte)
/// accepted where webpki refuses it only as a CA used as an end entity. webpki checks a
/// certificate's validity period before its basic constraints, so that refusal means the period
/// holds; a broker's is then checked for the name kaos dialled, as webpki would have.
#[derive(Debug)]
struct TrustedAsIs<V: ?Sized> {
    webpki: Arc<V>,
    /// The certificates of `--upstream-ca` or `--tls-client-ca`, as the file holds them.
    trusted: Vec<CertificateDer<'static>>,
}

impl<V: ?Sized> TrustedAsIs<V> {
    /// Whether `refused` is only webpki's "a CA certificate used as an end entity", for a
    /// certificate that is itself trusted.
    fn trusts_as_is(&self, end_entity: &CertificateDer<'_>, refused: &rustls::Error) -> bool {
        let ca_as_end_entity = matches!(
            refused,
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(why)))
                if matches!(why.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity))
        );
        ca_as_end_entity && self.trusted.iter().any(|trusted| trusted.as_ref() == end_entity.as_ref())
    }
}

impl ServerCertVerifier for TrustedAsIs<WebPkiServerVerifier> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(refused) if self.trusts_as_is(end_entity, &refused) => {
                rustls::client::verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

impl ClientCertVerifier for TrustedAsIs<dyn ClientCertVerifier> {
    fn offer_client_auth(&self) -> bool {
        self.webpki.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.webpki.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.webpki.verify_client_cert(end_entity, intermediates, now) {
            Err(refused) if self.trusts_as_is(end_entity, &refused) => Ok(ClientCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
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

    /// A self-signed certificate marked CA:TRUE, as `openssl req -x509` makes, for `names`,
    /// valid from `from` to `until` (seconds since the epoch).
    fn self_signed(names: &[&str], from: i64, until: i64) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("names");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(from as u64);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(until as u64);
        let key = rcgen::KeyPair::generate().expect("a key");
        params.self_signed(&key).expect("a certificate").der().clone()
    }

    fn broker_verifier(trusted: &[CertificateDer<'static>]) -> TrustedAsIs<WebPkiServerVerifier> {
        let mut roots = RootCertStore::empty();
        for certificate in trusted {
            roots.add(certificate.clone()).unwrap();
        }
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap();
        TrustedAsIs { webpki, trusted: trusted.to_vec() }
    }

    #[test]
    fn a_trusted_self_signed_broker_certificate_is_accepted_within_its_period_and_names() {
        const DAY: i64 = 86_400;
        let now = 1_800_000_000;
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now as u64));
        let localhost = ServerName::try_from("localhost").unwrap();
        let broker = self_signed(&["localhost"], now - DAY, now + DAY);
        let verify =
            |trusted: &[CertificateDer<'static>], certificate: &CertificateDer<'_>, name: &ServerName<'_>| {
                broker_verifier(trusted).verify_server_cert(certificate, &[], name, &[], at)
            };
        assert!(verify(std::slice::from_ref(&broker), &broker, &localhost).is_ok(), "trusted as it is");
        let other_name = ServerName::try_from("kafka.example").unwrap();
        assert!(
            verify(std::slice::from_ref(&broker), &broker, &other_name).is_err(),
            "the host name still counts"
        );
        let stranger = self_signed(&["localhost"], now - DAY, now + DAY);
        assert!(verify(std::slice::from_ref(&stranger), &broker, &localhost).is_err(), "not the trusted one");
        let expired = self_signed(&["localhost"], now - 3 * DAY, now - DAY);
        let error = verify(std::slice::from_ref(&expired), &expired, &localhost).unwrap_err();
        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{error:?}"
        );
        let early = self_signed(&["localhost"], now + DAY, now + 2 * DAY);
        assert!(verify(std::slice::from_ref(&early), &early, &localhost).is_err(), "not yet valid");
    }

    #[test]
    fn a_trusted_self_signed_client_certificate_is_accepted() {
        let now = UnixTime::now();
        let seconds = now.as_secs() as i64;
        let client = self_signed(&["client"], seconds - 60, seconds + 3600);
        let mut roots = RootCertStore::empty();
        roots.add(client.clone()).unwrap();
        let webpki =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap();
        let verifier = TrustedAsIs { webpki: webpki.clone(), trusted: vec![client.clone()] };
        assert!(webpki.verify_client_cert(&client, &[], now).is_err(), "webpki alone refuses it");
        assert!(verifier.verify_client_cert(&client, &[], now).is_ok());
        let stranger = self_signed(&["client"], seconds - 60, seconds + 3600);
        assert!(verifier.verify_client_cert(&stranger, &[], now).is_err());
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
