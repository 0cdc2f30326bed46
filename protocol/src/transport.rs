//! QUIC between the coordinator and its workers: one self-signed key pair per node, each side
//! pinning the other's certificate by SHA-256 during the handshake (nothing flows on a mismatch),
//! TLS 1.3 only, the protocol version in the ALPN, keep-alive and idle timeout from the config,
//! and framed [`Message`]s on bidirectional streams.
//!
//! One crypto provider (ring) is passed explicitly everywhere, so nothing depends on a
//! process-wide default.
//!
//! Flow control is set to what the protocol needs, not quinn's defaults (100 + 100 peer-opened
//! streams of 1.25 MB each): a worker never opens a stream, so the coordinator grants none and
//! reads small frames through a 64 KiB window; a worker accepts [`WORKER_MAX_STREAMS`]
//! coordinator streams with a window sized for dataset uploads. No unidirectional streams and no
//! datagrams either way.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::wire::{FrameDecoder, Message, ALPN};

/// Streams a coordinator may have open to one worker at once: one job at a time, with room for
/// streams still being torn down.
pub const WORKER_MAX_STREAMS: u32 = 4;
/// Per-stream receive window of a worker: what a coordinator may send ahead (datasets).
pub const WORKER_STREAM_WINDOW: u32 = 8 << 20;
/// Per-connection receive window of a worker.
pub const WORKER_CONNECTION_WINDOW: u32 = 2 * WORKER_STREAM_WINDOW;
/// Per-stream receive window of a coordinator: a worker only sends small frames.
pub const COORDINATOR_STREAM_WINDOW: u32 = 64 << 10;
/// Per-connection receive window of a coordinator.
pub const COORDINATOR_CONNECTION_WINDOW: u32 = 4 * COORDINATOR_STREAM_WINDOW;
/// The most bytes one `receive` takes from the stream at a time.
const READ_CHUNK: usize = 1 << 20;

/// The name a worker's certificate is issued for (pinning, not names, authenticates peers).
pub const SERVER_NAME: &str = "murmuration-worker";

/// A transport problem, naming the file, peer or step.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

fn err(context: impl std::fmt::Display) -> impl Fn(&dyn std::fmt::Display) -> TransportError {
    move |e| TransportError(format!("{context}: {e}"))
}

/// A node's certificate and private key.
#[derive(Clone)]
pub struct Identity {
    /// DER certificate.
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", fingerprint(&self.cert))
    }
}

/// Makes ring the process-wide rustls provider. Call it first thing in every binary: the
/// Hugging Face client's dependencies compile aws-lc-rs into rustls too, and a TLS config built
/// from the process default (jsonrpsee's `wss://`, reqwest) then uses ring like QUIC does: one
/// provider per binary. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// SHA-256 (hex) of a DER certificate: what `cluster.toml` pins.
pub fn fingerprint(cert: &[u8]) -> String {
    hex::encode(Sha256::digest(cert))
}

impl Identity {
    /// A new self-signed certificate for `name`.
    pub fn generate(name: &str) -> Result<Self, TransportError> {
        let certified =
            rcgen::generate_simple_self_signed(vec![name.to_string(), SERVER_NAME.to_string()])
                .map_err(|e| TransportError(format!("generating a certificate: {e}")))?;
        Ok(Self {
            cert: certified.cert.der().clone(),
            key: certified.signing_key.serialize_der(),
        })
    }

    /// This identity's pin.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// Writes `<dir>/<name>.key.der` and `<dir>/<name>.cert.der`. The key file is created new
    /// with mode 0600 in one step (never readable by others, not even for a moment) and an
    /// existing key, or anything else at its path, is never overwritten.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(), TransportError> {
        std::fs::create_dir_all(dir).map_err(|e| err(dir.display())(&e))?;
        let cert = dir.join(format!("{name}.cert.der"));
        let key = dir.join(format!("{name}.key.der"));
        write_new_private(&key, &self.key)?;
        std::fs::write(&cert, self.cert.as_ref()).map_err(|e| err(cert.display())(&e))?;
        Ok(())
    }

    /// Reads what [`Identity::save`] wrote.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TransportError> {
        let cert_bytes = std::fs::read(cert).map_err(|e| err(cert.display())(&e))?;
        let key_bytes = std::fs::read(key).map_err(|e| err(key.display())(&e))?;
        Ok(Self {
            cert: CertificateDer::from(cert_bytes),
            key: key_bytes,
        })
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

/// Creates `path` (which must not exist) readable and writable by the owner only, and writes
/// `bytes` to it.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), TransportError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            TransportError(format!(
                "{} exists: refusing to overwrite a key",
                path.display()
            ))
        } else {
            err(path.display())(&e)
        }
    })?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| err(path.display())(&e))
}

/// Keep-alive and idle timeout of every connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// QUIC keep-alive interval.
    pub keep_alive: Duration,
    /// A connection silent this long is dead.
    pub idle: Duration,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The transport settings of a worker (`worker = true`) or a coordinator connection.
fn transport(t: Timeouts, worker: bool) -> Result<Arc<quinn::TransportConfig>, TransportError> {
    let mut config = quinn::TransportConfig::default();
    config.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    config.datagram_receive_buffer_size(None);
    if worker {
        config.max_concurrent_bidi_streams(quinn::VarInt::from_u32(WORKER_MAX_STREAMS));
        config.stream_receive_window(quinn::VarInt::from_u32(WORKER_STREAM_WINDOW));
        config.receive_window(quinn::VarInt::from_u32(WORKER_CONNECTION_WINDOW));
    } else {
        config.max_concurrent_bidi_streams(quinn::VarInt::from_u32(0));
        config.stream_receive_window(quinn::VarInt::from_u32(COORDINATOR_STREAM_WINDOW));
        config.receive_window(quinn::VarInt::from_u32(COORDINATOR_CONNECTION_WINDOW));
    }
    config.keep_alive_interval(Some(t.keep_alive));
    config.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(t.idle)
            .map_err(|e| TransportError(format!("idle timeout: {e}")))?,
    ));
    Ok(Arc::new(config))
}

/// Accepts exactly the certificates whose SHA-256 is pinned.
#[derive(Debug)]
struct Pinned {
    pins: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>, who: &str) -> Result<(), rustls::Error> {
        let seen = fingerprint(cert);
        if self.pins.iter().any(|p| p.eq_ignore_ascii_case(&seen)) {
            Ok(())
        } else {
            Err(rustls::Error::General(format!(
                "{who} certificate {seen} is not pinned"
            )))
        }
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, "worker")
            .map(|_| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for Pinned {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, "coordinator")
            .map(|_| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A worker's endpoint: listens on `listen`, accepts only clients whose certificate is pinned.
pub fn server_endpoint(
    identity: &Identity,
    listen: SocketAddr,
    client_pins: Vec<String>,
    timeouts: Timeouts,
) -> Result<quinn::Endpoint, TransportError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        pins: client_pins,
        provider: provider.clone(),
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError(format!("TLS: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert.clone()], identity.private_key())
        .map_err(|e| TransportError(format!("worker certificate: {e}")))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TransportError(format!("QUIC TLS: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(timeouts, true)?);
    quinn::Endpoint::server(config, listen)
        .map_err(|e| TransportError(format!("listening on {listen}: {e}")))
}

/// A coordinator's client configuration for one worker: presents `identity`, accepts only the
/// worker certificate pinned as `worker_pin`, offers `alpn`.
pub fn client_config(
    identity: &Identity,
    worker_pin: &str,
    timeouts: Timeouts,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TransportError> {
    let provider = provider();
    let verifier = Arc::new(Pinned {
        pins: vec![worker_pin.to_string()],
        provider: provider.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert.clone()], identity.private_key())
        .map_err(|e| TransportError(format!("coordinator certificate: {e}")))?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError(format!("QUIC TLS: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(timeouts, false)?);
    Ok(config)
}

/// A client endpoint on an ephemeral local port.
pub fn client_endpoint() -> Result<quinn::Endpoint, TransportError> {
    quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
        .map_err(|e| TransportError(format!("client endpoint: {e}")))
}

/// Writes one message as a frame.
pub async fn send(stream: &mut quinn::SendStream, message: &Message) -> Result<(), TransportError> {
    let frame = message
        .encode()
        .map_err(|e| TransportError(e.to_string()))?;
    stream
        .write_all(&frame)
        .await
        .map_err(|e| TransportError(format!("send: {e}")))
}

/// Reads the next message; `Ok(None)` when the peer finished the stream between frames. A frame
/// over its cap, of a type the peer never sends, garbage, trailing bytes or a stream that ends
/// inside a frame is an error (close the connection).
///
/// Takes the chunks quinn already holds (no buffer is allocated or zeroed per call); cancel-safe
/// in `select!`, since what was read stays in `decoder`.
pub async fn receive(
    stream: &mut quinn::RecvStream,
    decoder: &mut FrameDecoder,
) -> Result<Option<Message>, TransportError> {
    loop {
        if let Some(message) = decoder
            .next_message()
            .map_err(|e| TransportError(e.to_string()))?
        {
            return Ok(Some(message));
        }
        match stream
            .read_chunk(READ_CHUNK, true)
            .await
            .map_err(|e| TransportError(format!("receive: {e}")))?
        {
            Some(chunk) => decoder.extend(&chunk.bytes),
            None if decoder.buffered() > 0 => {
                return Err(TransportError(format!(
                    "the stream ended inside a frame ({} byte(s) left)",
                    decoder.buffered()
                )))
            }
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Heartbeat, Sender, ALPN};

    fn timeouts() -> Timeouts {
        Timeouts {
            keep_alive: Duration::from_millis(500),
            idle: Duration::from_secs(3),
        }
    }

    /// A worker endpoint that echoes heartbeats on every stream.
    async fn echo_worker(coordinator_pin: String) -> (quinn::Endpoint, Identity) {
        let worker = Identity::generate("w").expect("identity");
        let endpoint = server_endpoint(
            &worker,
            "127.0.0.1:0".parse().expect("addr"),
            vec![coordinator_pin],
            timeouts(),
        )
        .expect("server");
        let accept = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accept.accept().await {
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send_s, mut recv_s)) = conn.accept_bi().await {
                        let mut decoder = FrameDecoder::new(Sender::Coordinator);
                        while let Ok(Some(m)) = receive(&mut recv_s, &mut decoder).await {
                            let _ = super::send(&mut send_s, &m).await;
                        }
                        let _ = send_s.finish();
                    }
                });
            }
        });
        (endpoint, worker)
    }

    async fn ping(
        client: &quinn::Endpoint,
        cfg: quinn::ClientConfig,
        addr: SocketAddr,
    ) -> Result<Message, String> {
        let conn = client
            .connect_with(cfg, addr, SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut s, mut r) = conn.open_bi().await.map_err(|e| e.to_string())?;
        super::send(&mut s, &Message::Heartbeat(Heartbeat { nonce: 42 }))
            .await
            .map_err(|e| e.to_string())?;
        let mut decoder = FrameDecoder::new(Sender::Worker);
        receive(&mut r, &mut decoder)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "closed".to_string())
    }

    #[tokio::test]
    async fn pinned_peers_talk_and_everything_else_is_refused() {
        let coordinator = Identity::generate("c").expect("identity");
        let (server, worker) = echo_worker(coordinator.fingerprint()).await;
        let addr = server.local_addr().expect("addr");
        let client = client_endpoint().expect("client");

        let ok =
            client_config(&coordinator, &worker.fingerprint(), timeouts(), ALPN).expect("config");
        assert_eq!(
            ping(&client, ok, addr).await,
            Ok(Message::Heartbeat(Heartbeat { nonce: 42 }))
        );

        // The coordinator pins another worker certificate: refused in the handshake.
        let stranger = Identity::generate("x").expect("identity");
        let wrong_pin =
            client_config(&coordinator, &stranger.fingerprint(), timeouts(), ALPN).expect("config");
        let e = ping(&client, wrong_pin, addr)
            .await
            .expect_err("worker not pinned");
        assert!(e.contains("not pinned"), "{e}");

        // A coordinator the worker does not pin: refused.
        let intruder =
            client_config(&stranger, &worker.fingerprint(), timeouts(), ALPN).expect("config");
        assert!(ping(&client, intruder, addr).await.is_err());

        // Another protocol version in the ALPN: refused.
        let old = client_config(
            &coordinator,
            &worker.fingerprint(),
            timeouts(),
            b"murmuration/0",
        )
        .expect("config");
        assert!(ping(&client, old, addr).await.is_err());
    }

    #[tokio::test]
    async fn a_worker_can_open_no_stream_and_a_coordinator_only_a_few() {
        let coordinator = Identity::generate("c").expect("identity");
        let worker = Identity::generate("w").expect("identity");
        let server = server_endpoint(
            &worker,
            "127.0.0.1:0".parse().expect("addr"),
            vec![coordinator.fingerprint()],
            timeouts(),
        )
        .expect("server");
        let addr = server.local_addr().expect("addr");
        let accepted = tokio::spawn(async move {
            let conn = server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("conn");
            (server, conn)
        });
        let client = client_endpoint().expect("client");
        let cfg =
            client_config(&coordinator, &worker.fingerprint(), timeouts(), ALPN).expect("config");
        let conn = client
            .connect_with(cfg, addr, SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake");
        let (_server, worker_side) = accepted.await.expect("accept");
        let wait = Duration::from_millis(500);
        // The coordinator grants a worker no stream of either kind: nothing it sends unasked can
        // pile up in the coordinator's memory.
        assert!(
            tokio::time::timeout(wait, worker_side.open_uni())
                .await
                .is_err(),
            "a worker opened a unidirectional stream"
        );
        assert!(
            tokio::time::timeout(wait, worker_side.open_bi())
                .await
                .is_err(),
            "a worker opened a bidirectional stream"
        );
        // The coordinator gets WORKER_MAX_STREAMS streams at once, and no more.
        let mut streams = Vec::new();
        for _ in 0..WORKER_MAX_STREAMS {
            let (mut s, r) = tokio::time::timeout(wait, conn.open_bi())
                .await
                .expect("within the limit")
                .expect("stream");
            super::send(&mut s, &Message::Heartbeat(Heartbeat { nonce: 1 }))
                .await
                .expect("send");
            streams.push((s, r));
        }
        assert!(
            tokio::time::timeout(wait, conn.open_bi()).await.is_err(),
            "a coordinator opened more than {WORKER_MAX_STREAMS} streams"
        );
        // Nor do datagrams get through.
        assert!(worker_side.max_datagram_size().is_none());
    }

    #[test]
    fn identities_round_trip_through_files() {
        let dir = tempfile_dir("round-trip");
        let id = Identity::generate("node").expect("identity");
        id.save(&dir, "node").expect("save");
        let back =
            Identity::load(&dir.join("node.cert.der"), &dir.join("node.key.der")).expect("load");
        assert_eq!(back.fingerprint(), id.fingerprint());
        assert_eq!(id.fingerprint().len(), 64);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "murmuration-id-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[cfg(unix)]
    #[test]
    fn a_private_key_is_created_owner_only_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile_dir("private");
        let id = Identity::generate("node").expect("identity");
        id.save(&dir, "node").expect("save");
        let key = dir.join("node.key.der");
        let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key mode {mode:o}");
        // A second save does not replace the key (create-new, not write-then-chmod) ...
        let other = Identity::generate("node").expect("identity");
        let e = other.save(&dir, "node").expect_err("refused");
        assert!(e.to_string().contains("refusing to overwrite"), "{e}");
        let back = Identity::load(&dir.join("node.cert.der"), &key).expect("load");
        assert_eq!(back.fingerprint(), id.fingerprint());
        // ... nor write through a file or link someone else put at the key's path.
        let planted = dir.join("planted");
        std::fs::write(&planted, b"not a key").expect("plant");
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).expect("mode");
        std::os::unix::fs::symlink(&planted, dir.join("other.key.der")).expect("symlink");
        assert!(other.save(&dir, "other").is_err());
        assert_eq!(std::fs::read(&planted).expect("planted"), b"not a key");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
