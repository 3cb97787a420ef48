//! [`Peer`]: what an engine knows about the connection a request came on, read by the
//! responder and the access log. Its own module so that neither of those two imports the other
//! for it.

use std::net::IpAddr;

/// What the engine knows about the connection a request came on.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Peer<'a> {
    /// The connection may stay open after this response.
    pub keep_alive: bool,
    /// The client is on a loopback address (the stats endpoint's default audience).
    pub loopback: bool,
    /// The client's address, when the engine knows it (for the access log).
    pub addr: Option<IpAddr>,
    /// The bytes the request was parsed from, head first (the access log reads `User-Agent`
    /// and `Referer` there, so the parser keeps no field for them).
    pub head: &'a [u8],
}
