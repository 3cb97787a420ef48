//! The validated, typed plan of a run: raw arguments become this once ([`crate::cli`]), and the
//! engine works only from it.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4, ToSocketAddrs};
use std::time::Duration;

/// One target URL, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Where to connect.
    pub addr: SocketAddrV4,
    /// The Host header value.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// Relative weight for the choice among targets.
    pub weight: u32,
    /// `https://`: TLS over the connection (crate::tls).
    pub tls: bool,
}

/// How the active load is offered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Open loop: new sessions (connections) at `rate` per second, `calls` requests each.
    Sessions {
        /// Sessions per second.
        rate: f64,
        /// Requests per session, one after another.
        calls: u32,
    },
    /// Open loop: requests at `rate` per second over `connections` persistent connections.
    RequestRate {
        /// Requests per second.
        rate: f64,
        /// Pool size.
        connections: usize,
    },
    /// Closed loop: `connections` connections each sending its next request on each reply.
    Peak {
        /// Connections.
        connections: usize,
    },
    /// No active load (only background populations).
    None,
}

/// Fixed or Poisson inter-arrival times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Evenly spaced.
    Fixed,
    /// Exponential inter-arrival times (a Poisson process).
    Poisson,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Targets, chosen round-robin by weight.
    pub targets: Vec<Target>,
    /// The active load.
    pub mode: Mode,
    /// Spacing of arrivals.
    pub arrival: Arrival,
    /// How long the measured part lasts (after the warm-up).
    pub duration: Option<Duration>,
    /// Stop after this many sessions (or requests) have started.
    pub sessions: Option<u64>,
    /// Excluded from the statistics.
    pub warmup: Duration,
    /// Inactive connections (incomplete request, reconnect when closed).
    pub inactive: usize,
    /// Idle persistent connections.
    pub idle: usize,
    /// One request every this long per idle connection (jittered ±10%).
    pub idle_period: Duration,
    /// Connect and response timeout.
    pub timeout: Duration,
    /// Source addresses, used round-robin.
    pub sources: Vec<Ipv4Addr>,
    /// The dispatch mechanism the generator runs on.
    pub dispatch: ioscale_dispatch::Mechanism,
    /// Seed of the generator's random numbers (Poisson arrivals, idle phases).
    pub seed: u64,
    /// The request sent (method, headers, body, version, pipelining depth).
    pub request: crate::request::RequestSpec,
    /// What `https://` targets trust (--cacert, --insecure).
    pub tls: crate::tls::TlsOptions,
}

/// A plan error: one sentence naming the value and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

/// Parses `http://HOST[:PORT]/PATH` (optionally `URL@WEIGHT`); only IPv4 hosts and names that
/// resolve to IPv4 are accepted.
pub fn parse_target(s: &str) -> Result<Target, PlanError> {
    let (url, weight) = match s.rsplit_once('@') {
        Some((u, w)) if !w.contains('/') => {
            let w: u32 = w.parse().ok().filter(|w| *w > 0).ok_or_else(|| {
                PlanError(format!(
                    "invalid weight '{w}' in '{s}': expected a positive integer after '@'"
                ))
            })?;
            (u, w)
        }
        _ => (s, 1),
    };
    let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (r, false),
        (None, Some(r)) => (r, true),
        _ => {
            return Err(PlanError(format!(
                "invalid URL '{url}': expected http://HOST:PORT/PATH or https://HOST:PORT/PATH"
            )))
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(PlanError(format!("invalid URL '{url}': no host")));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => {
            let port: u16 = p.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                PlanError(format!("invalid port '{p}' in '{url}': expected 1-65535"))
            })?;
            (h, port)
        }
        None => (authority, if tls { 443 } else { 80 }),
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| PlanError(format!("cannot resolve '{host}' in '{url}': {e}")))?
        .find_map(|a| match a {
            std::net::SocketAddr::V4(v4) => Some(v4),
            std::net::SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| PlanError(format!("'{host}' in '{url}' has no IPv4 address")))?;
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(PlanError(format!(
            "invalid path in '{url}': spaces and control characters must be percent-encoded"
        )));
    }
    Ok(Target {
        url: url.to_string(),
        addr,
        host: authority.to_string(),
        path: path.to_string(),
        weight,
        tls,
    })
}

/// Parses `--source-addrs`: a count N (127.0.0.1 … 127.0.0.N) or a comma list of 127/8
/// addresses.
pub fn parse_sources(s: &str) -> Result<Vec<Ipv4Addr>, PlanError> {
    if let Ok(n) = s.parse::<u32>() {
        if !(1..=254).contains(&n) {
            return Err(PlanError(format!("invalid --source-addrs '{s}': expected a count from 1 to 254 or a list of 127.x.y.z addresses")));
        }
        return Ok((1..=n).map(|i| Ipv4Addr::new(127, 0, 0, i as u8)).collect());
    }
    s.split(',')
        .map(|a| {
            let ip: Ipv4Addr = a.trim().parse().map_err(|_| {
                PlanError(format!("invalid source address '{a}': expected an IPv4 address in 127.0.0.0/8"))
            })?;
            if ip.octets()[0] != 127 {
                return Err(PlanError(format!(
                    "source address '{a}' is not in 127.0.0.0/8: the generator only loads this machine's loopback"
                )));
            }
            Ok(ip)
        })
        .collect()
}

/// Parses `250ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration '{s}': expected a number with ms, s or m, e.g. 500ms or 10s");
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 || v * mult > 1e7 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * mult))
}

impl Plan {
    /// Checks the plan as a whole.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.targets.is_empty() {
            return Err(PlanError("no target: give at least one http://HOST:PORT/PATH".into()));
        }
        if self.duration.is_none() && self.sessions.is_none() {
            return Err(PlanError("the run has no bound: give --duration or --sessions".into()));
        }
        if let Mode::Peak { connections } | Mode::RequestRate { connections, .. } = self.mode {
            if connections == 0 {
                return Err(PlanError("--connections must be at least 1".into()));
            }
        }
        if let Mode::Sessions { rate, .. } | Mode::RequestRate { rate, .. } = self.mode {
            if !(rate > 0.0 && rate.is_finite() && rate <= 10_000_000.0) {
                return Err(PlanError(format!(
                    "invalid rate '{rate}': expected a positive number up to 10000000 per second"
                )));
            }
        }
        let held = self.inactive
            + self.idle
            + match self.mode {
                Mode::Peak { connections } | Mode::RequestRate { connections, .. } => connections,
                _ => 0,
            };
        if held > 19_500 {
            return Err(PlanError(format!(
                "{held} held connections exceed what one process may open here (about 19,500 of its 20,000 descriptors)"
            )));
        }
        if self.idle > 0 && self.idle_period.is_zero() {
            return Err(PlanError("--idle-period must be longer than 0".into()));
        }
        Ok(())
    }

    /// Connections the plan holds open for its whole length.
    pub fn held(&self) -> usize {
        self.inactive + self.idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_target("http://127.0.0.1:8080/a/b?c=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((t.path.as_str(), t.host.as_str(), t.weight), ("/a/b?c=1", "127.0.0.1:8080", 1));
        assert_eq!(parse_target("http://127.0.0.1:81@3").unwrap().weight, 3);
        assert_eq!(parse_target("http://127.0.0.1:81").unwrap().path, "/");
        assert!(parse_target("ftp://x/").unwrap_err().0.contains("expected http://HOST:PORT/PATH"));
        assert!(parse_target("http://127.0.0.1:0/").unwrap_err().0.contains("invalid port '0'"));
        assert!(parse_target("http://127.0.0.1:99999/").unwrap_err().0.contains("1-65535"));
    }

    #[test]
    fn sources() {
        assert_eq!(parse_sources("3").unwrap().len(), 3);
        assert_eq!(parse_sources("127.0.0.5,127.0.0.6").unwrap()[1], Ipv4Addr::new(127, 0, 0, 6));
        assert!(parse_sources("10.0.0.1").unwrap_err().0.contains("not in 127.0.0.0/8"));
        assert!(parse_sources("0").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("fast").unwrap_err().contains("'fast'"));
    }
}
