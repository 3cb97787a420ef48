//! ioscale-lab: the papers' experiments as data, run on this machine, drawn as their figures.
//!
//! Experiments are TOML files under `experiments/` ([`spec`]); the runner ([`runner`]) starts
//! the server and the load generator as separate processes pinned to separate cores and hands
//! each experiment to the runner of its kind ([`kinds`]: `dispatch`, `http`, `herd`, and the
//! long-running `soak`), which measures the server's CPU from the kernel's accounting and
//! appends every point as one JSON line ([`record`]); the report ([`report`]) draws each
//! reproduced figure with the paper's axes and captions it with what the paper found beside
//! what this run found.

#![deny(missing_docs)]

pub mod budget;
pub mod capacity;
pub mod error;
pub mod kinds;
pub mod record;
pub mod report;
pub mod runner;
pub mod spec;
pub mod sys;
