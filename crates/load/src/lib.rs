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
//!
//! | module | role |
//! | --- | --- |
//! | [`cli`] | the command line: arguments → a validated [`Plan`] (and, for `--hosts`, a [`hosts::HostsPlan`]) → a run → summary, JSON, exit code |
//! | [`plan`] | the typed plan, its checks, its split into segments, the global arrival schedule |
//! | [`hosts`] | the coordinator of a run over several hosts (`--hosts`) |
//! | [`segment`] | being one host's segment of such a run |
//! | [`engine`] | the event loop(s) and the connection state machine |
//! | [`report`] | the record and the human summary; the self-check and the server's verdict |
//! | [`expect`] | `--expect`: the status codes a run asks for |
//! | [`stats`], [`hdrlog`] | histograms, counters, per-second series, merging; the HdrHistogram log |
//! | [`http`], [`request`], [`tls`] | responses parsed, requests encoded, TLS |
//!
//! Dependencies run one way: `cli` → `hosts` → `report`, `cli` → `engine` → `report`; no
//! library module imports `cli`.

#![deny(missing_docs)]

pub mod cli;
pub mod engine;
pub mod error;
pub mod expect;
pub mod hdrlog;
pub mod hosts;
pub mod http;
pub mod plan;
pub mod report;
pub mod request;
pub mod segment;
pub mod stats;
pub mod sys;
pub mod tls;

pub use engine::run;
pub use plan::Plan;
pub use report::Report;
