//! The server's capacity, measured as such, and the CPU budget that makes the server the weaker
//! side.
//!
//! A capacity figure counts only where the server's CPU was saturated (at least
//! [`SATURATED`] of its budget) while the generator kept its schedule: otherwise it is the
//! generator's ceiling, not the server's. The lab calibrates in three steps:
//!
//! 1. a light probe measures the CPU one reply costs the server and the generator;
//! 2. where the budget is `auto`, it is the largest share of a core that still lets the
//!    generator offer the experiment's top rate with CPU to spare ([`auto_budget`]);
//! 3. probes at and past the estimated capacity find the reply rate of the saturated reference
//!    server ([`Calibration::capacity`]).

use serde::{Deserialize, Serialize};

/// The share of its budget the server must use for a point to count as saturated.
pub const SATURATED: f64 = 0.90;

/// How much of its cores the generator may use at the top rate, so its schedule holds.
pub const GENERATOR_HEADROOM: f64 = 0.60;

/// The budget `auto` never goes below (a tighter one throttles in bursts too coarse to measure).
pub const MIN_AUTO_BUDGET: f64 = 0.05;

/// One calibration run: what was offered and what each side spent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Offered rate (sessions or requests per second).
    pub offered: f64,
    /// Replies per second the generator counted.
    pub replies_per_s: f64,
    /// The server's CPU over the window, in cores (1.0 = one core busy).
    pub server_cores: f64,
    /// The generator's CPU per reply (seconds).
    pub generator_s_per_reply: f64,
    /// Whether the generator kept its schedule (its own self-check).
    pub generator_valid: bool,
    /// RT-signal queue overflows (`SIGIO`) the server counted over the window (0 for the
    /// mechanisms without a signal queue).
    #[serde(default)]
    pub overflows: f64,
}

/// A server replying to less than this share of the offered rate has fallen behind it: its
/// reply rate has levelled off.
pub const LEVELLED: f64 = 0.95;

impl Probe {
    /// Whether the server replied to less than [`LEVELLED`] of the offered rate.
    pub fn fell_behind(&self) -> bool {
        self.replies_per_s < LEVELLED * self.offered
    }

    /// The server's CPU per reply (seconds).
    pub fn server_s_per_reply(&self) -> Option<f64> {
        (self.replies_per_s > 0.0 && self.server_cores > 0.0)
            .then(|| self.server_cores / self.replies_per_s)
    }

    /// Whether the server used at least [`SATURATED`] of `budget` (cores).
    pub fn saturated(&self, budget: f64) -> bool {
        self.server_cores >= SATURATED * budget
    }

    /// Whether the server kept up with the offered rate: the generator valid, [`LEVELLED`] of
    /// the rate replied to, and no RT-signal queue overflow (the kernel's own word that the
    /// server's pending notices outgrew what it can hold: Chandra & Mosberger's mark of the
    /// RT-signal server's saturation).
    pub fn kept_up(&self) -> bool {
        self.generator_valid && !self.fell_behind() && self.overflows == 0.0
    }
}

/// The step of the knee search (a ratio of rates).
pub const KNEE_STEP: f64 = 1.15;

/// The most probes the knee search makes.
pub const KNEE_PROBES: usize = 6;

/// Where the knee search starts, as a fraction of the reference capacity: the knees of rtsig
/// measured on the 2-core machine these notes come from were 0.56-0.91 of it: within two steps
/// either way.
pub const KNEE_START: f64 = 0.7;

/// The next rate of the knee search of a mechanism under the budget the reference server's
/// `capacity` was measured with, from its probes so far; `None` when done. It starts at
/// [`KNEE_START`] of the capacity (a mechanism dearer per reply than the reference saturates
/// earlier), steps
/// [`KNEE_STEP`] up while the mechanism keeps up ([`Probe::kept_up`]) or down while it does not,
/// then probes between the highest rate kept up and the lowest not until they are less than
/// half a step apart. A probe whose generator was INVALID is made once more at its rate.
pub fn knee_next(capacity: f64, probes: &[Probe]) -> Option<f64> {
    let Some(last) = probes.last() else { return Some(KNEE_START * capacity) };
    if probes.len() >= KNEE_PROBES {
        return None;
    }
    if !last.generator_valid {
        // The generator's schedule slipped: the probe says nothing of the server. Once more at
        // the same rate; twice invalid there ends the search.
        let tries = probes.iter().filter(|p| p.offered == last.offered).count();
        return (tries < 2).then_some(last.offered);
    }
    let (good, bad) = knee_bounds(probes);
    match (good, bad) {
        (Some(g), Some(b)) => (b / g > KNEE_STEP.sqrt() * 1.01).then(|| (g * b).sqrt()),
        (Some(_), None) => (last.offered < 1.3 * capacity).then_some(KNEE_STEP * last.offered),
        (None, _) => (last.offered > 0.2 * capacity).then(|| last.offered / KNEE_STEP),
    }
}

/// The highest rate kept up below the lowest rate not kept up, and that lowest rate.
fn knee_bounds(probes: &[Probe]) -> (Option<f64>, Option<f64>) {
    let min = |m: Option<f64>, r: f64| Some(m.map_or(r, |m: f64| m.min(r)));
    let max = |m: Option<f64>, r: f64| Some(m.map_or(r, |m: f64| m.max(r)));
    // A probe whose generator slipped judges neither way.
    let bad = probes
        .iter()
        .filter(|p| p.generator_valid && !p.kept_up())
        .map(|p| p.offered)
        .fold(None, min);
    let good = probes
        .iter()
        .filter(|p| p.kept_up() && bad.is_none_or(|b| p.offered < b))
        .map(|p| p.offered)
        .fold(None, max);
    (good, bad)
}

/// The knee the search found: the highest rate the mechanism kept up with, below one it did
/// not. `None` when it kept up with every rate probed or with none.
pub fn knee(probes: &[Probe]) -> Option<f64> {
    match knee_bounds(probes) {
        (Some(g), Some(_)) => Some(g),
        _ => None,
    }
}

/// The largest budget (share of one core, at most 1) under which the generator, on
/// `generator_cores` cores, can offer `top_fraction` times the server's capacity using at most
/// [`GENERATOR_HEADROOM`] of them, from a light probe's per-reply costs. `None` when the probe
/// measured no cost (nothing replied).
///
/// Capacity under a budget `b` is about `b / server_cost`; offering `top · b / server_cost`
/// costs the generator `top · b · generator_cost / server_cost` cores.
pub fn auto_budget(light: &Probe, top_fraction: f64, generator_cores: f64) -> Option<f64> {
    let server = light.server_s_per_reply()?;
    let generator = light.generator_s_per_reply;
    if generator <= 0.0 || top_fraction <= 0.0 {
        return None;
    }
    let b = GENERATOR_HEADROOM * generator_cores * server / (top_fraction * generator);
    Some(b.clamp(MIN_AUTO_BUDGET, 1.0))
}

/// The budget to try again with when the capacity measured under `budget` turned out too high
/// for the generator: offering `top_fraction` times it would cost the generator more than
/// [`GENERATOR_HEADROOM`] of its cores at the generator's cost per reply measured at that
/// capacity (the light probe's costs overestimate the server's, which falls more as it
/// batches). `None` when the budget already leaves the headroom (within 10%).
pub fn refit_budget(
    cal: &Calibration,
    budget: f64,
    top_fraction: f64,
    generator_cores: f64,
) -> Option<f64> {
    let cap = cal.capacity?;
    let at = cal
        .probes
        .iter()
        .filter(|p| p.generator_valid && p.replies_per_s == cap && p.generator_s_per_reply > 0.0)
        .map(|p| p.generator_s_per_reply)
        .next()?;
    let needed = top_fraction * cap * at / generator_cores;
    (needed > 1.1 * GENERATOR_HEADROOM)
        .then(|| (budget * GENERATOR_HEADROOM / needed).clamp(MIN_AUTO_BUDGET, 1.0))
}

/// The rates to probe past the light one, from the capacity the light probe suggests.
pub fn probe_rates(light: &Probe, budget: f64) -> Vec<f64> {
    let Some(cost) = light.server_s_per_reply() else { return Vec::new() };
    let estimate = budget / cost;
    // Per-reply cost falls as the server batches under load, so the estimate is low: probe at
    // it and well past it.
    vec![estimate, 1.3 * estimate, 1.8 * estimate]
}

/// Whether the probes found where the reference server's reply rate levels off: a probe with
/// the generator valid, the server saturated under `budget` and falling behind the offered rate.
pub fn levelled(probes: &[Probe], budget: Option<f64>) -> bool {
    let cores = budget.unwrap_or(1.0);
    probes.iter().any(|p| p.generator_valid && p.saturated(cores) && p.fell_behind())
}

/// What calibration found, kept in every point of the experiment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The reference server's capacity (replies/s) where it was saturated, if it ever was.
    pub capacity: Option<f64>,
    /// The generator's ceiling (replies/s on its cores at 100%), from its cost per reply.
    pub generator_ceiling: f64,
    /// The server's budget (share of one core), or `None` when it ran without one.
    pub budget: Option<f64>,
    /// The knee of the mechanism that places the rates instead of the capacity (the
    /// experiment's `knee`), where one was found.
    #[serde(default)]
    pub knee: Option<f64>,
    /// How the capacity was found, in words.
    pub method: String,
    /// Every probe, in order.
    pub probes: Vec<Probe>,
}

impl Calibration {
    /// Judges the probes: the capacity is the highest reply rate among the probes where the
    /// server was saturated and the generator valid. Without such a probe, the highest valid
    /// reply rate is returned as the rate basis and the method says the server never saturated.
    pub fn judge(
        probes: Vec<Probe>,
        budget: Option<f64>,
        generator_cores: f64,
        reference: &str,
    ) -> Calibration {
        let cores = budget.unwrap_or(1.0);
        let costs: Vec<f64> = probes
            .iter()
            .filter(|p| p.generator_s_per_reply > 0.0)
            .map(|p| p.generator_s_per_reply)
            .collect();
        let generator_ceiling = costs
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.min(c))))
            .map_or(0.0, |c| generator_cores / c);
        let saturated = probes
            .iter()
            .filter(|p| p.generator_valid && p.saturated(cores))
            .map(|p| p.replies_per_s)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
        let levelled = levelled(&probes, budget);
        let budget_text = match budget {
            Some(b) => format!("under a budget of {} of a core", crate::budget::fmt_fraction(b)),
            None => "without a CPU budget".into(),
        };
        let method = match saturated {
            Some(c) if levelled => format!(
                "the {reference} server's highest reply rate when saturated ({:.0}% or more of its CPU) {budget_text} and replying to less than {:.0}% of the offered rate, with the generator valid: {c:.0}/s; the generator's ceiling is about {generator_ceiling:.0}/s",
                SATURATED * 100.0,
                LEVELLED * 100.0
            ),
            Some(c) => format!(
                "the {reference} server's highest reply rate when saturated ({:.0}% or more of its CPU) {budget_text}, with the generator valid: {c:.0}/s, a lower bound: it still replied to {:.0}% or more of every rate offered; the generator's ceiling is about {generator_ceiling:.0}/s",
                SATURATED * 100.0,
                LEVELLED * 100.0
            ),
            None => format!(
                "the {reference} server never reached {:.0}% of its CPU {budget_text} while the generator kept its schedule: rates are placed on the highest valid reply rate, the generator's limit, not the server's",
                SATURATED * 100.0
            ),
        };
        Calibration { capacity: saturated, generator_ceiling, budget, knee: None, method, probes }
    }

    /// The rate that `rate_fraction` multiplies: the knee where one was found, else the
    /// capacity, or (never saturated) the highest valid reply rate.
    pub fn basis(&self) -> Option<f64> {
        self.knee.or(self.capacity).or_else(|| {
            self.probes
                .iter()
                .filter(|p| p.generator_valid)
                .map(|p| p.replies_per_s)
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(offered: f64, replies: f64, cores: f64, gen_us: f64, valid: bool) -> Probe {
        Probe {
            offered,
            replies_per_s: replies,
            server_cores: cores,
            generator_s_per_reply: gen_us / 1e6,
            generator_valid: valid,
            overflows: 0.0,
        }
    }

    /// A knee probe: `replies` of `offered`, with `overflows`.
    fn knee_probe(offered: f64, replies: f64, overflows: f64) -> Probe {
        Probe { overflows, ..probe(offered, replies, 0.2, 80.0, true) }
    }

    #[test]
    fn keeping_up_means_replying_without_overflow() {
        assert!(knee_probe(1000.0, 990.0, 0.0).kept_up());
        assert!(!knee_probe(1000.0, 900.0, 0.0).kept_up(), "fell behind");
        assert!(!knee_probe(1000.0, 1000.0, 1.0).kept_up(), "one overflow");
        assert!(!probe(1000.0, 1000.0, 0.2, 80.0, false).kept_up(), "generator invalid");
    }

    #[test]
    fn the_knee_search_steps_up_then_probes_between() {
        // A mechanism that keeps up to 4,300/s of a reference capacity of 6,000/s.
        let answer = |r: f64| knee_probe(r, r, if r > 4300.0 { 3.0 } else { 0.0 });
        let mut probes = Vec::new();
        while let Some(r) = knee_next(6000.0, &probes) {
            probes.push(answer(r));
        }
        let rates: Vec<f64> = probes.iter().map(|p| p.offered.round()).collect();
        // 4,200 kept up, 4,830 did not, then one probe between: 4,504 did not.
        assert_eq!(rates, vec![4200.0, 4830.0, 4504.0], "{rates:?}");
        assert_eq!(knee(&probes).map(f64::round), Some(4200.0));
        assert!(probes.len() <= KNEE_PROBES);
        // The first probe's generator slipped (and the server overflowed meanwhile): it is made
        // again, and only the valid probes place the knee.
        let mut probes = vec![Probe { generator_valid: false, ..answer(4200.0) }];
        probes[0].overflows = 4.0;
        assert_eq!(knee_next(6000.0, &probes), Some(4200.0));
        while let Some(r) = knee_next(6000.0, &probes) {
            probes.push(answer(r));
        }
        assert_eq!(knee(&probes).map(f64::round), Some(4200.0), "{probes:?}");
        // A knee below the start: one step down finds it.
        let lower = |r: f64| knee_probe(r, r, if r > 3800.0 { 2.0 } else { 0.0 });
        let mut probes = Vec::new();
        while let Some(r) = knee_next(6000.0, &probes) {
            probes.push(lower(r));
        }
        assert_eq!(knee(&probes).map(f64::round), Some(3652.0), "{probes:?}");
        // Twice invalid at one rate ends the search.
        let slipped = Probe { generator_valid: false, ..answer(4200.0) };
        assert_eq!(knee_next(6000.0, &[slipped.clone(), slipped]), None);
    }

    #[test]
    fn the_knee_search_steps_down_and_gives_up_without_a_knee() {
        // Overflows at every rate: down in steps until 0.2 of the capacity, no knee.
        let mut probes = Vec::new();
        while let Some(r) = knee_next(6000.0, &probes) {
            probes.push(knee_probe(r, r, 1.0));
        }
        assert_eq!(probes.len(), KNEE_PROBES);
        assert!(probes.windows(2).all(|w| w[1].offered < w[0].offered));
        assert_eq!(knee(&probes), None);
        // Keeping up with every rate up to 1.3x: no knee either (the capacity places the rates).
        let mut probes = Vec::new();
        while let Some(r) = knee_next(6000.0, &probes) {
            probes.push(knee_probe(r, r, 0.0));
        }
        assert!(probes.last().unwrap().offered >= 1.3 * 6000.0 || probes.len() == KNEE_PROBES);
        assert_eq!(knee(&probes), None);
        // A knee places the rates before the capacity does.
        let c = Calibration { knee: Some(4000.0), capacity: Some(6000.0), ..Default::default() };
        assert_eq!(c.basis(), Some(4000.0));
    }

    #[test]
    fn auto_budget_leaves_the_generator_headroom() {
        // 40 µs per reply on the server, 100 µs on the generator, top rate 1.5x, one core:
        // 0.6 * 40 / (1.5 * 100) = 0.16 of a core.
        let light = probe(1000.0, 1000.0, 0.04, 100.0, true);
        let b = auto_budget(&light, 1.5, 1.0).unwrap();
        assert!((b - 0.16).abs() < 1e-9, "{b}");
        // Three generator cores leave room for three times the budget; never above one core.
        assert!((auto_budget(&light, 1.5, 3.0).unwrap() - 0.48).abs() < 1e-9);
        assert_eq!(auto_budget(&light, 1.5, 16.0), Some(1.0));
        assert_eq!(auto_budget(&probe(1000.0, 0.0, 0.0, 0.0, true), 1.5, 1.0), None);
    }

    #[test]
    fn capacity_counts_only_saturated_valid_probes() {
        let probes = vec![
            probe(1000.0, 1000.0, 0.04, 100.0, true),
            probe(4000.0, 4000.0, 0.15, 90.0, true), // 75% of a 0.2 budget: not saturated
            probe(5600.0, 5200.0, 0.19, 85.0, true), // saturated
            probe(8000.0, 5400.0, 0.195, 80.0, false), // generator invalid: not counted
        ];
        let c = Calibration::judge(probes, Some(0.2), 1.0, "epoll");
        assert_eq!(c.capacity, Some(5200.0));
        assert_eq!(c.basis(), Some(5200.0));
        assert!((c.generator_ceiling - 1e6 / 80.0).abs() < 1e-6);
        assert!(c.method.contains("saturated"), "{}", c.method);
        assert!(
            !c.method.contains("lower bound"),
            "5200 of 5600 offered fell behind: {}",
            c.method
        );
    }

    #[test]
    fn a_capacity_too_high_for_the_generator_refits_the_budget() {
        // Capacity 7,000/s under 0.23 of a core, 100 µs of generator CPU per reply there: 1.3x
        // of it needs 0.91 of the generator's core, so the budget shrinks by 0.6 / 0.91.
        let probes = vec![probe(9000.0, 7000.0, 0.23, 100.0, true)];
        let c = Calibration::judge(probes, Some(0.23), 1.0, "epoll");
        let b = refit_budget(&c, 0.23, 1.3, 1.0).unwrap();
        assert!((b - 0.23 * 0.6 / 0.91).abs() < 1e-9, "{b}");
        // Where it needs no more than the headroom, the budget stays.
        let probes = vec![probe(5000.0, 4000.0, 0.23, 100.0, true)];
        let c = Calibration::judge(probes, Some(0.23), 1.0, "epoll");
        assert_eq!(refit_budget(&c, 0.23, 1.3, 1.0), None);
    }

    #[test]
    fn a_saturated_server_still_keeping_up_gives_a_lower_bound() {
        let probes =
            vec![probe(4000.0, 4000.0, 0.19, 90.0, true), probe(5000.0, 4990.0, 0.195, 85.0, true)];
        assert!(!levelled(&probes, Some(0.2)));
        let c = Calibration::judge(probes, Some(0.2), 1.0, "epoll");
        assert_eq!(c.capacity, Some(4990.0));
        assert!(c.method.contains("lower bound"), "{}", c.method);
    }

    #[test]
    fn a_server_that_never_saturates_is_said_so() {
        let probes = vec![
            probe(10_000.0, 9_900.0, 0.6, 95.0, true),
            probe(14_000.0, 12_000.0, 0.7, 99.0, false),
        ];
        let c = Calibration::judge(probes, None, 1.0, "epoll");
        assert_eq!(c.capacity, None);
        assert_eq!(c.basis(), Some(9_900.0));
        assert!(c.method.contains("not the server's"), "{}", c.method);
    }

    #[test]
    fn probes_go_past_the_estimate() {
        let light = probe(1000.0, 1000.0, 0.04, 100.0, true);
        let r = probe_rates(&light, 0.2);
        assert_eq!(r.len(), 3);
        assert!((r[0] - 5000.0).abs() < 1e-6 && r[2] > r[1] && r[1] > r[0]);
    }
}
