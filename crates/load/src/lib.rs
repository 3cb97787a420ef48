//! ioscale-load: an open-loop HTTP/1.1 load generator that holds thousands of idle and inactive
//! connections while it measures, and says when it was itself the bottleneck.
//!
//! httperf's role in both papers (Provos & Lever §5, Chandra & Mosberger §3.1.1), measured the
//! way wrk2 taught: sessions or requests start on a fixed or Poisson schedule whatever the server
//! does; response times go into HdrHistograms from the *intended* send time (coordinated omission
//! corrected) and from the actual one; the reply rate is sampled every second (avg, min, max,
//! stddev, httperf's figures); background populations — Provos & Lever's *inactive* connections
//! (an incomplete request, reopened when the server closes it) and Chandra & Mosberger's *idle*
//! persistent connections (one request every period) — keep their own statistics. The run checks
//! itself (schedule lag, achieved vs target rate, its own CPU, connections asked vs established)
//! and marks itself INVALID when it could not keep its plan.
//!
//! The event loop runs on [`ioscale_dispatch`], epoll by default.

#![deny(missing_docs)]

pub mod cli;
pub mod engine;
pub mod hdrlog;
pub mod hosts;
pub mod http;
pub mod plan;
pub mod request;
pub mod stats;
pub mod sys;
pub mod tls;

pub use engine::{run, Report};
pub use plan::Plan;
