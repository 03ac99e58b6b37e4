//! Native HTTPS: the certificate and key from `WA_TLS_CERT` / `WA_TLS_KEY`
//! (PEM), checked at start, and watched: a changed pair on disk is loaded
//! for new connections without a restart (a broken one is logged and the
//! previous pair kept).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use futures::{Stream, StreamExt};
use poem::listener::{RustlsCertificate, RustlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain and its key as read from disk.
#[derive(Clone, PartialEq, Eq)]
struct Pair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn read_pair(cert: &Path, key: &Path) -> anyhow::Result<Pair> {
    let pair = Pair {
        cert: std::fs::read(cert)
            .with_context(|| format!("Failed to read WA_TLS_CERT {}", cert.display()))?,
        key: std::fs::read(key)
            .with_context(|| format!("Failed to read WA_TLS_KEY {}", key.display()))?,
    };
    check(&pair)?;
    Ok(pair)
}

/// Whether the pair makes a server configuration (the key matches the certificate).
fn check(pair: &Pair) -> anyhow::Result<()> {
    let certs = CertificateDer::pem_slice_iter(&pair.cert)
        .collect::<Result<Vec<_>, _>>()
        .context("WA_TLS_CERT is not a PEM certificate chain")?;
    anyhow::ensure!(!certs.is_empty(), "WA_TLS_CERT holds no certificate");
    let key =
        PrivateKeyDer::from_pem_slice(&pair.key).context("WA_TLS_KEY is not a PEM private key")?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("WA_TLS_CERT and WA_TLS_KEY do not make a usable pair")?;
    Ok(())
}

fn config(pair: &Pair) -> RustlsConfig {
    RustlsConfig::new().fallback(
        RustlsCertificate::new()
            .cert(pair.cert.clone())
            .key(pair.key.clone()),
    )
}

/// The TLS configurations to serve with: the pair on disk now (an error if
/// it is unusable), then each changed, usable pair, checked every `interval`.
/// The stream never ends (the listener expects that).
pub fn watch(
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
) -> anyhow::Result<impl Stream<Item = RustlsConfig> + Send + Unpin + 'static> {
    let first = read_pair(&cert, &key)?;
    let initial = config(&first);
    let changes = futures::stream::unfold(first, move |mut current| {
        let (cert, key) = (cert.clone(), key.clone());
        async move {
            loop {
                tokio::time::sleep(interval).await;
                match read_pair(&cert, &key) {
                    Ok(pair) if pair != current => {
                        tracing::info!(cert = %cert.display(), "TLS certificate changed on disk; loaded");
                        current = pair;
                        return Some((config(&current), current));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "TLS files unusable; keeping the previous certificate")
                    }
                }
            }
        }
    });
    Ok(Box::pin(
        futures::stream::once(async move { initial }).chain(changes),
    ))
}
