//! TLS for the listeners that opt in (`tcp_tls`, `tcp_acked_tls`, `syslog_tls`,
//! `relp_tls`, `http_tls`, `ws_tls`): the certificates from the configuration, loaded
//! at start and again on SIGHUP, as rustls server configurations.
//!
//! Two configurations from one set of files, because the listeners authenticate
//! clients differently: raw TCP, syslog and RELP have no other way to know who writes,
//! so with `tls_client_ca_file` set they require a client certificate signed by one of
//! its CAs; HTTP and WebSocket clients authenticate with tokens, and a browser has no
//! client certificate, so there one is verified if offered and not required.
//!
//! A reload swaps the configurations new handshakes take; established connections keep
//! the one they were made with. A reload that fails (a missing file, a key that does
//! not match) keeps the previous certificates and says why.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock, atomic::Ordering},
};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

use crate::{config::Settings, stats::TlsStats};

/// Which way a listener authenticates its clients (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Raw TCP, syslog, RELP: a client certificate is required when a CA is set.
    Stream,
    /// HTTPS, WSS: a client certificate is verified if offered.
    Web,
}

/// The TLS configurations in force, and the files they come from.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    current: RwLock<Configs>,
    /// Handshakes, failures, refusals, reloads.
    pub stats: Arc<TlsStats>,
}

#[derive(Clone)]
struct Configs {
    stream: Arc<ServerConfig>,
    web: Arc<ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("client_ca", &self.client_ca)
            .finish_non_exhaustive()
    }
}

/// Why certificates could not be loaded: the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {why}", path.display())]
pub struct TlsError {
    what: &'static str,
    path: PathBuf,
    why: String,
}

impl Tls {
    /// Loads the certificates if any listener asks for TLS; `None` if none does.
    ///
    /// # Errors
    /// A listener asks for TLS without `tls_cert_file`/`tls_key_file`, or a file cannot
    /// be read or used.
    pub fn from_settings(s: &Settings, stats: Arc<TlsStats>) -> Result<Option<Tls>, TlsError> {
        let wanted = [
            ("tcp_tls", s.tcp_tls),
            ("tcp_acked_tls", s.tcp_acked_tls),
            ("syslog_tls", s.syslog_tls),
            ("relp_tls", s.relp_tls),
            ("http_tls", s.http_tls),
            ("ws_tls", s.ws_tls),
        ];
        let Some((first, _)) = wanted.iter().find(|(_, on)| *on) else {
            return Ok(None);
        };
        for (name, path) in [
            ("tls_cert_file", &s.tls_cert_file),
            ("tls_key_file", &s.tls_key_file),
        ] {
            if path.as_os_str().is_empty() {
                return Err(TlsError {
                    what: "setting",
                    path: PathBuf::from(name),
                    why: format!("{first} is on, so {name} must name a PEM file"),
                });
            }
        }
        let client_ca =
            (!s.tls_client_ca_file.as_os_str().is_empty()).then(|| s.tls_client_ca_file.clone());
        let configs = build(&s.tls_cert_file, &s.tls_key_file, client_ca.as_deref())?;
        Ok(Some(Tls {
            cert: s.tls_cert_file.clone(),
            key: s.tls_key_file.clone(),
            client_ca,
            current: RwLock::new(configs),
            stats,
        }))
    }

    /// Whether a CA for client certificates is configured.
    pub fn requires_client_certificates(&self) -> bool {
        self.client_ca.is_some()
    }

    /// The configuration a new handshake on a listener of kind `auth` takes.
    pub fn config(&self, auth: ClientAuth) -> Arc<ServerConfig> {
        let c = self.current.read().expect("tls configs lock");
        match auth {
            ClientAuth::Stream => c.stream.clone(),
            ClientAuth::Web => c.web.clone(),
        }
    }

    /// Reads the files again (SIGHUP). New handshakes take the new certificates;
    /// established connections keep theirs. On failure nothing changes.
    ///
    /// # Errors
    /// The file that could not be used, and why.
    pub fn reload(&self) -> Result<(), TlsError> {
        match build(&self.cert, &self.key, self.client_ca.as_deref()) {
            Ok(configs) => {
                *self.current.write().expect("tls configs lock") = configs;
                self.stats.tls_reloads_total.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats
                    .tls_reload_failures_total
                    .fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

/// Both configurations from the files: TLS 1.2 and 1.3 only (rustls has nothing
/// older), aws-lc-rs's cipher suites and key exchanges (post-quantum hybrid first).
fn build(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Configs, TlsError> {
    fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(String) -> TlsError + 'a {
        move |why| TlsError {
            what,
            path: path.to_owned(),
            why,
        }
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err("certificate file", cert)(e.to_string()))?;
    if chain.is_empty() {
        return Err(err("certificate file", cert)(
            "no CERTIFICATE block in it".into(),
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| err("key file", key)(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = || {
        ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("aws-lc-rs supports TLS 1.2 and 1.3")
    };
    let roots = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| err("client CA file", ca)(e.to_string()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(err("client CA file", ca)(
                    "no usable CA certificate in it".into(),
                ));
            }
            Some((Arc::new(roots), ca))
        }
        None => None,
    };
    let make = |required: bool| -> Result<Arc<ServerConfig>, TlsError> {
        let b = builder();
        let b = match &roots {
            Some((roots, ca)) => {
                let v =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
                let v = if required {
                    v
                } else {
                    v.allow_unauthenticated()
                };
                let v = v
                    .build()
                    .map_err(|e| err("client CA file", ca)(e.to_string()))?;
                b.with_client_cert_verifier(v)
            }
            None => b.with_no_client_auth(),
        };
        let mut c = b
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(|e| err("certificate and key", cert)(e.to_string()))?;
        // Web clients negotiate HTTP/1.1 (the only HTTP we speak).
        if !required {
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        Ok(Arc::new(c))
    };
    Ok(Configs {
        stream: make(true)?,
        web: make(false)?,
    })
}
