//! `https://` targets: rustls on the generator's non-blocking sockets.
//!
//! A connection's I/O is an [`Io`] enum: `Plain` reads and writes the socket directly (the
//! plain-HTTP path pays one match, nothing else), `Tls` goes through a rustls
//! `ClientConnection` that the event loop drives by hand (`read_tls` / `process_new_packets` /
//! `write_tls` on the same descriptor, never blocking).
//!
//! Trust: by default the platform's roots (`rustls-native-certs`: `/etc/ssl/certs` and
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`, so a CA an administrator added with `update-ca-certificates`
//! is trusted as curl and wget trust it — `webpki-roots` would compile in Mozilla's list and ignore
//! local CAs, the common case for a load generator aimed at internal services); `--cacert FILE`
//! trusts only the PEM certificates in FILE (as curl's `--cacert`); `--insecure` accepts any
//! certificate chain and name but still checks the handshake signatures.
//!
//! Every connection shares one `ClientConfig` and so its in-memory session store: a reconnect
//! resumes the session (TLS 1.3 tickets, TLS 1.2 IDs/tickets) when the server allows it; the
//! engine counts full and resumed handshakes and records the handshake time in its own
//! histogram, apart from response times. The crypto provider is `ring`.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What to trust.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only the PEM certificates in this file (instead of the platform's roots).
    pub cacert: Option<PathBuf>,
    /// Accept any certificate (self-signed, wrong name, expired).
    pub insecure: bool,
}

/// The shared client configuration of a run.
#[derive(Clone, Debug)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Tls {
    /// Builds the configuration; an error is one sentence (a CA file that cannot be read or
    /// holds no certificate, or no root at all).
    pub fn new(opts: &TlsOptions) -> Result<Tls, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let config = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            match &opts.cacert {
                Some(path) => {
                    let bad = |e: &dyn std::fmt::Display| {
                        format!("cannot use --cacert {}: {e}", path.display())
                    };
                    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                        .map_err(|e| bad(&e))?
                        .collect::<Result<_, _>>()
                        .map_err(|e| bad(&e))?;
                    if certs.is_empty() {
                        return Err(bad(&"it holds no PEM certificate"));
                    }
                    for c in certs {
                        roots.add(c).map_err(|e| bad(&e))?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    roots.add_parsable_certificates(found.certs);
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(Tls { config: Arc::new(config) })
    }

    /// The SNI / verification name of a Host header value (`host[:port]`).
    pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
        let name = bare_host(host);
        ServerName::try_from(name.to_string())
            .map_err(|e| format!("'{name}' is not a valid TLS server name: {e}"))
    }

    /// A new client connection to `name` (resuming a stored session when there is one).
    pub fn connect(&self, name: ServerName<'static>) -> io::Result<TlsConn> {
        let c = ClientConnection::new(self.config.clone(), name).map_err(io::Error::other)?;
        Ok(TlsConn { c })
    }

    /// One blocking handshake before the run, so a certificate problem is one clear sentence
    /// naming the host and the reason instead of a count of failed connections.
    pub fn preflight(&self, url: &str, host: &str, addr: std::net::SocketAddr) -> io::Result<()> {
        let name = Tls::server_name(host).map_err(io::Error::other)?;
        let mut conn = self.connect(name)?.c;
        let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                let hint = if matches!(
                    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
                    Some(rustls::Error::InvalidCertificate(_))
                ) {
                    "; give --cacert FILE with the CA that signed it, or --insecure"
                } else {
                    ""
                };
                return Err(io::Error::new(
                    e.kind(),
                    format!("TLS handshake with {} ({url}) failed: {e}{hint}", bare_host(host)),
                ));
            }
        }
        Ok(())
    }
}

/// `host` of a Host header value `host[:port]`.
fn bare_host(host: &str) -> &str {
    let h = match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    // An IPv6 literal is bracketed in a URL and a Host header, not in a server name.
    h.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(h)
}

/// One TLS connection, driven by the event loop.
pub struct TlsConn {
    c: ClientConnection,
}

/// `Read`/`Write` on a raw non-blocking descriptor for rustls' `read_tls`/`write_tls`.
struct Fd(RawFd);

impl Read for Fd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::sys::read(self.0, buf)
    }
}

impl Write for Fd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::sys::write(self.0, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsConn {
    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.c.is_handshaking()
    }

    /// Whether the handshake resumed a stored session.
    pub fn resumed(&self) -> bool {
        self.c.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// Whether TLS records wait to be written.
    pub fn wants_write(&self) -> bool {
        self.c.wants_write()
    }

    /// Writes pending TLS records until done (`Ok`) or the socket is full (`WouldBlock`).
    pub fn flush(&mut self, fd: RawFd) -> io::Result<()> {
        while self.c.wants_write() {
            self.c.write_tls(&mut Fd(fd))?;
        }
        Ok(())
    }

    /// Advances the handshake as far as the socket allows: `Ok(true)` when it is complete,
    /// `Ok(false)` to wait for the socket, an error (certificate, protocol, EOF) otherwise.
    pub fn handshake(&mut self, fd: RawFd) -> io::Result<bool> {
        loop {
            match self.flush(fd) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
            if !self.c.is_handshaking() {
                return Ok(true);
            }
            match self.c.read_tls(&mut Fd(fd)) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the TLS handshake",
                    ))
                }
                Ok(_) => {
                    if let Err(e) = self.c.process_new_packets() {
                        let _ = self.flush(fd); // the alert, if it fits
                        return Err(tls_error(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if self.c.wants_write() { self.handshake(fd) } else { Ok(false) };
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes plaintext to send (all of it, or `WouldBlock` when rustls' buffer is full and the
    /// socket too) and writes what the socket takes now.
    pub fn write(&mut self, fd: RawFd, buf: &[u8]) -> io::Result<usize> {
        let n = self.c.writer().write(buf)?;
        match self.flush(fd) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => {}
            Err(e) => return Err(e),
        }
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Reads plaintext: `Ok(0)` at the end of the stream, `WouldBlock` when the socket has no
    /// more records.
    pub fn read(&mut self, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.c.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: HTTP's own framing says whether the
                // response was whole.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.c.read_tls(&mut Fd(fd))? {
                0 => {
                    // TCP EOF: let rustls account for it, then report the end.
                    let _ = self.c.process_new_packets();
                    return match self.c.reader().read(buf) {
                        Ok(n) => Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                        Err(e) => Err(e),
                    };
                }
                _ => {
                    self.c.process_new_packets().map_err(tls_error)?;
                    match self.flush(fd) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

/// A connection's transport: the socket itself, or TLS over it.
pub enum Io {
    /// Plain HTTP: reads and writes go straight to the socket.
    Plain,
    /// HTTPS.
    Tls(Box<TlsConn>),
}

impl Io {
    /// Reads plaintext (see [`TlsConn::read`]).
    #[inline]
    pub fn read(&mut self, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Plain => crate::sys::read(fd, buf),
            Io::Tls(t) => t.read(fd, buf),
        }
    }

    /// Writes plaintext (see [`TlsConn::write`]).
    #[inline]
    pub fn write(&mut self, fd: RawFd, buf: &[u8]) -> io::Result<usize> {
        match self {
            Io::Plain => crate::sys::write(fd, buf),
            Io::Tls(t) => t.write(fd, buf),
        }
    }

    /// Whether TLS records wait for the socket.
    #[inline]
    pub fn wants_write(&self) -> bool {
        match self {
            Io::Plain => false,
            Io::Tls(t) => t.wants_write(),
        }
    }
}
