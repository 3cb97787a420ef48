//! Experiments as data: the TOML files under `experiments/`, and the grid of points each expands to.
//!
//! An experiment names what it reproduces, what the paper found, the mechanisms, the server and
//! load settings, a grid of parameters (every combination is one point), a `quick` and a `full`
//! variant that override the grid, and the figures and tables drawn from its points. Every key
//! and value is checked before anything runs ([`check`]; the keys are listed in
//! `experiments/README.md`).

use serde::Deserialize;
use std::collections::BTreeMap;

pub mod check;
pub mod rule;
pub use check::Problem;
pub use rule::Rule;
use std::fmt;
use std::path::{Path, PathBuf};

/// What kind of runner an experiment needs.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `ioscale overhead`: dispatch cost without HTTP.
    Dispatch,
    /// `ioscale serve` driven by `ioscale load`.
    Http,
    /// `ioscale herd`: connect latency vs processes blocked on one listener.
    Herd,
}

/// A value of a grid parameter: a number or a word.
#[derive(Clone, Debug, Deserialize, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A number (idle count, rate fraction, file size, …).
    Num(f64),
    /// A word (a mode, a wait mechanism, …).
    Word(String),
    /// In a figure's or table's `where`: any of these.
    Any(Vec<Value>),
}

impl Value {
    /// The number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Word(_) | Value::Any(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => write!(f, "{}", *n as i64),
            Value::Num(n) => write!(f, "{n}"),
            Value::Word(w) => f.write_str(w),
            Value::Any(v) => {
                write!(f, "{}", v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("|"))
            }
        }
    }
}

/// A grid: parameter name → the values it takes. Points are the cartesian product.
pub type Grid = BTreeMap<String, Vec<Value>>;

/// One variant's overrides.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Grid entries replacing the experiment's.
    #[serde(default)]
    pub grid: Grid,
    /// Mechanisms replacing the experiment's.
    pub mechanisms: Option<Vec<String>>,
    /// Seconds of load per point.
    pub duration: Option<f64>,
    /// Seconds of warm-up per point (excluded from statistics).
    pub warmup: Option<f64>,
    /// Rounds per point (dispatch and herd kinds).
    pub rounds: Option<u32>,
    /// Times each point is measured, replacing the experiment's.
    pub repeats: Option<u32>,
    /// The server's CPU budget, replacing the experiment's.
    pub server_cpu: Option<ServerCpu>,
}

/// A figure drawn from the experiment's points: one line per series value.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// Short id (used in file and anchor names).
    pub id: String,
    /// What it reproduces, e.g. "Chandra & Mosberger 2001, Fig. 3".
    pub reproduces: String,
    /// Title above the plot.
    pub title: String,
    /// Parameter or metric on the x axis.
    pub x: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Metric on the y axis.
    pub y: String,
    /// Label of the y axis.
    pub y_label: String,
    /// What makes a line (default: the mechanism).
    #[serde(default = "default_series")]
    pub series: String,
    /// Only points whose parameters equal these.
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, Value>,
    /// Metrics drawn as bars around y (e.g. a standard deviation).
    pub y_err: Option<String>,
    /// Extra metrics drawn dashed in each series' colour (e.g. min and max).
    #[serde(default)]
    pub y_extra: Vec<String>,
    /// Logarithmic axes.
    #[serde(default)]
    pub log_x: bool,
    /// Logarithmic y axis.
    #[serde(default)]
    pub log_y: bool,
    /// What the paper found.
    pub paper_finding: String,
    /// Metric holding a timestamp list of mode switches, drawn as vertical marks (hybrid).
    pub marks: Option<String>,
    /// The paper's finding as checkable rules; the figure's verdict (`[[figure.rule]]`).
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    /// This figure's data make the experiment's table in summary.md (default: the first figure).
    #[serde(default)]
    pub in_summary: bool,
}

fn default_series() -> String {
    "mechanism".to_string()
}

/// A table drawn from the points (e.g. Chandra & Mosberger's Table 1).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// Short id.
    pub id: String,
    /// What it reproduces.
    pub reproduces: String,
    /// Title.
    pub title: String,
    /// Parameters that make the rows (in order).
    pub rows: Vec<String>,
    /// Metrics that make the columns.
    pub columns: Vec<String>,
    /// Only points whose parameters equal these.
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, Value>,
    /// What the paper found.
    pub paper_finding: String,
    /// The paper's finding as checkable rules; the table's verdict (`[[table.rule]]`).
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

/// Server settings for `http` experiments.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Extra `ioscale serve` arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Signal-queue cap for RT-signal mechanisms (`--sigqueue-max`).
    pub sigqueue_max: Option<u64>,
}

/// The server's CPU budget an experiment asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budgeting {
    /// No budget: the server may use its whole core.
    Unlimited,
    /// This fraction of one core.
    Fixed(f64),
    /// Chosen from a light probe so the generator keeps headroom at the top rate.
    Auto,
}

/// Load settings for `http` experiments (grid parameters override these per point).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// Requests per connection (httperf's `--num-calls`).
    pub calls: Option<u32>,
    /// Seconds between requests of an idle connection.
    pub idle_period: Option<f64>,
    /// Extra `ioscale load` arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Pooled persistent connections carrying the rate in `requests` mode (default 50).
    pub connections: Option<u32>,
    /// Run the points of each mechanism as one ramp against one server process (hybrid).
    #[serde(default)]
    pub ramp: bool,
    /// How the request rate is offered: `sessions` (new connections at the rate, `calls`
    /// requests each; httperf's way) or `periodic` (the `idle` connections themselves carry the
    /// rate, each sending one request every idle/rate seconds; Chandra & Mosberger §3.1.1).
    #[serde(default)]
    pub mode: LoadMode,
}

/// How an `http` experiment offers its request rate.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LoadMode {
    /// New connections at the rate, `calls` requests each.
    #[default]
    Sessions,
    /// The persistent connections carry the rate.
    Periodic,
    /// Requests at the rate over a pool of `connections` persistent connections (`ioscale load
    /// --request-rate`): no connection set-up per request, so the generator can offer more than
    /// one server core can answer and overload is reachable on a two-core machine.
    Requests,
}

/// One experiment file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Its name (the file stem, and what `ioscale lab NAME` takes).
    pub name: String,
    /// One line for `ioscale lab list`.
    pub summary: String,
    /// The paper figures and tables it reproduces.
    pub reproduces: String,
    /// The runner it needs.
    pub kind: Kind,
    /// Mechanisms (or wait modes for `herd`) it compares.
    pub mechanisms: Vec<String>,
    /// Run nginx as a reference line under the same load, when installed.
    #[serde(default)]
    pub nginx: bool,
    /// The grid (quick and full override entries).
    #[serde(default)]
    pub grid: Grid,
    /// Seconds of load per point.
    #[serde(default = "default_duration")]
    pub duration: f64,
    /// Seconds of warm-up per point.
    #[serde(default)]
    pub warmup: f64,
    /// Rounds per point.
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    /// Times each point is measured, in interleaved rounds (http; default 1 quick, 3 full).
    #[serde(default)]
    pub repeats: Option<u32>,
    /// The server's CPU budget (http): a fraction of one core, `auto` or `none`.
    #[serde(default)]
    pub server_cpu: Option<ServerCpu>,
    /// The mechanism whose own knee places the rates (http), where not the reference server's
    /// capacity: Chandra & Mosberger's Table 1 rows sit around the RT-signal server's
    /// saturation.
    #[serde(default)]
    pub knee: Option<String>,
    /// Server settings.
    #[serde(default)]
    pub server: Server,
    /// Load settings.
    #[serde(default)]
    pub load: Load,
    /// The quick variant (default `ioscale lab`).
    #[serde(default)]
    pub quick: Variant,
    /// The full variant (`--full`, the papers' grids).
    #[serde(default)]
    pub full: Variant,
    /// Figures.
    #[serde(default, rename = "figure")]
    pub figures: Vec<Figure>,
    /// Tables.
    #[serde(default, rename = "table")]
    pub tables: Vec<Table>,
}

fn default_duration() -> f64 {
    3.0
}

fn default_rounds() -> u32 {
    3
}

/// The server's CPU budget in an experiment file (`server_cpu`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ServerCpu {
    /// No budget: the server may use a whole core.
    None,
    /// A budget chosen from the calibration, leaving the generator headroom.
    Auto,
    /// This fraction of one core, in (0, 1].
    Fraction(f64),
}

impl From<ServerCpu> for Budgeting {
    fn from(c: ServerCpu) -> Budgeting {
        match c {
            ServerCpu::None => Budgeting::Unlimited,
            ServerCpu::Auto => Budgeting::Auto,
            ServerCpu::Fraction(f) => Budgeting::Fixed(f),
        }
    }
}

impl<'de> Deserialize<'de> for ServerCpu {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(f) if f > 0.0 && f <= 1.0 => Ok(ServerCpu::Fraction(f)),
            Raw::Word(w) if w == "auto" => Ok(ServerCpu::Auto),
            Raw::Word(w) if w == "none" => Ok(ServerCpu::None),
            _ => Err(serde::de::Error::custom(
                "server_cpu: expected a fraction of one core in (0, 1], \"auto\" or \"none\"",
            )),
        }
    }
}

/// Which variant to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    /// Minutes on a 2-core machine.
    Quick,
    /// The papers' grids.
    Full,
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Which::Quick => "quick",
            Which::Full => "full",
        })
    }
}

/// The experiment with one variant applied.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The experiment.
    pub exp: Experiment,
    /// Which variant.
    pub which: Which,
    /// The effective grid.
    pub grid: Grid,
    /// The effective mechanisms.
    pub mechanisms: Vec<String>,
    /// Seconds of load per point.
    pub duration: f64,
    /// Seconds of warm-up.
    pub warmup: f64,
    /// Rounds.
    pub rounds: u32,
    /// Times each point is measured, in interleaved rounds (1 where the kind repeats inside
    /// its own tool, or for a ramp).
    pub repeats: u32,
    /// The server's CPU budget.
    pub server_cpu: Option<ServerCpu>,
}

impl Experiment {
    /// How many times each point of a variant is measured: `repeats` of the variant, else of
    /// the experiment, else 1 in quick and 3 in full (Chandra & Mosberger's figures are means
    /// of repeated runs). Only http experiments repeat points: dispatch and herd repeat rounds
    /// inside their own tool (`rounds`), and a ramp is one run through its steps.
    fn repeats_for(&self, which: Which, v: &Variant) -> u32 {
        if self.kind != Kind::Http || self.load.ramp {
            return 1;
        }
        v.repeats.or(self.repeats).unwrap_or(match which {
            Which::Quick => 1,
            Which::Full => 3,
        })
    }

    /// Applies a variant.
    pub fn plan(&self, which: Which) -> Plan {
        let v = match which {
            Which::Quick => &self.quick,
            Which::Full => &self.full,
        };
        let mut grid = self.grid.clone();
        for (k, vals) in &v.grid {
            grid.insert(k.clone(), vals.clone());
        }
        Plan {
            exp: self.clone(),
            which,
            grid,
            mechanisms: v.mechanisms.clone().unwrap_or_else(|| self.mechanisms.clone()),
            duration: v.duration.unwrap_or(self.duration),
            warmup: v.warmup.unwrap_or(self.warmup),
            rounds: v.rounds.unwrap_or(self.rounds),
            repeats: self.repeats_for(which, v),
            server_cpu: v.server_cpu.or(self.server_cpu),
        }
    }
}

/// One point of a plan: a mechanism and one value per grid parameter.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Point {
    /// The mechanism (or wait mode).
    pub mechanism: String,
    /// Parameter values.
    pub params: BTreeMap<String, Value>,
}

impl Point {
    /// A stable key for `--resume`.
    pub fn key(&self, experiment: &str, which: Which) -> String {
        let p: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{experiment}/{which}/{}/{}", self.mechanism, p.join(","))
    }

    /// A numeric parameter.
    pub fn num(&self, name: &str) -> Option<f64> {
        self.params.get(name).and_then(Value::as_f64)
    }
}

impl Plan {
    /// Every point: mechanisms × the cartesian product of the grid, mechanism innermost so that
    /// mechanisms are interleaved in time; with `repeats` above 1, that list once per round,
    /// each point carrying its `round` (1, 2, …).
    pub fn points(&self) -> Vec<Point> {
        let mut combos: Vec<BTreeMap<String, Value>> = vec![BTreeMap::new()];
        for (k, vals) in &self.grid {
            let mut next = Vec::new();
            for c in &combos {
                for v in vals {
                    let mut c2 = c.clone();
                    c2.insert(k.clone(), v.clone());
                    next.push(c2);
                }
            }
            combos = next;
        }
        let mut once = Vec::new();
        for c in combos {
            for m in &self.mechanisms {
                once.push(Point { mechanism: m.clone(), params: c.clone() });
            }
        }
        if self.repeats <= 1 {
            return once;
        }
        // Interleaved rounds: every point once, then every point again, so that a drift of
        // the machine over the run spreads over all points instead of biasing some.
        let mut out = Vec::with_capacity(once.len() * self.repeats as usize);
        for round in 1..=self.repeats {
            for p in &once {
                let mut p = p.clone();
                p.params.insert("round".into(), Value::Num(f64::from(round)));
                out.push(p);
            }
        }
        out
    }
}

/// An error in an experiment file: which file, and what is wrong with it.
#[derive(Debug)]
pub struct SpecError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for SpecError {}

/// Reads at most [`check::MAX_FILE_BYTES`] of a file as UTF-8 text.
fn read_bounded(path: &Path) -> Result<String, Problem> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Problem::Read(e.to_string()))?;
    let mut buf = Vec::new();
    f.take(check::MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Problem::Read(e.to_string()))?;
    if buf.len() as u64 > check::MAX_FILE_BYTES {
        let bytes = std::fs::metadata(path).map_or(buf.len() as u64, |m| m.len());
        return Err(Problem::TooLarge { bytes: bytes.max(buf.len() as u64) });
    }
    String::from_utf8(buf).map_err(|e| {
        Problem::Read(format!("byte {} is not UTF-8 text", e.utf8_error().valid_up_to()))
    })
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// Parses and checks one experiment's text: its keys and values ([`check::keys`]), then what
/// they mean together ([`check::coherence`]). `stem` is the file's name without `.toml`.
pub fn parse(text: &str, stem: &str) -> Result<Experiment, Problem> {
    let syntax = |e: toml::de::Error| Problem::Syntax {
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        message: e.message().trim().replace('\n', "; "),
    };
    let doc: toml::Table = text.parse().map_err(syntax)?;
    check::keys(&doc)?;
    let exp: Experiment = toml::from_str(text).map_err(syntax)?;
    if exp.name != stem {
        return Err(Problem::Inconsistent {
            key: "name".into(),
            message: format!("'{}' differs from the file's name '{stem}'", exp.name),
        });
    }
    check::coherence(&exp)?;
    Ok(exp)
}

/// Loads one experiment file and checks it.
pub fn load(path: &Path) -> Result<Experiment, SpecError> {
    let err = |problem: Problem| SpecError { path: path.to_path_buf(), problem };
    let text = read_bounded(path).map_err(err)?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    parse(&text, stem).map_err(err)
}

/// Loads every `*.toml` in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Experiment>, SpecError> {
    let rd = std::fs::read_dir(dir).map_err(|e| SpecError {
        path: dir.to_path_buf(),
        problem: Problem::Read(format!("cannot read the experiments directory: {e}")),
    })?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
name = "t"
summary = "s"
reproduces = "r"
kind = "http"
mechanisms = ["epoll", "poll"]
[grid]
idle = [0, 100]
rate_fraction = [0.5]
[quick.grid]
idle = [0]
[[figure]]
id = "f"
reproduces = "Fig. 1"
title = "T"
x = "idle"
x_label = "idle"
y = "reply_rate"
y_label = "replies/s"
paper_finding = "p"
"#;

    #[test]
    fn grid_expands_with_variants() {
        let e: Experiment = toml::from_str(SAMPLE).unwrap();
        // Full repeats each of its 4 points in 3 rounds.
        assert_eq!(e.plan(Which::Full).points().len(), 12);
        let q = e.plan(Which::Quick).points();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].mechanism, "epoll");
        assert_eq!(q[1].mechanism, "poll");
        assert_eq!(q[0].key("t", Which::Quick), "t/quick/epoll/idle=0,rate_fraction=0.5");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let bad = SAMPLE.replace("summary = \"s\"", "summary = \"s\"\nsumary = 1");
        let e = toml::from_str::<Experiment>(&bad).unwrap_err();
        assert!(e.to_string().contains("sumary"), "{e}");
    }

    #[test]
    fn the_shipped_experiments_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
        let all = load_dir(&dir).unwrap();
        assert!(
            all.iter().any(|e| e.name == "dispatch-overhead"),
            "{:?}",
            all.iter().map(|e| &e.name).collect::<Vec<_>>()
        );
        for e in &all {
            assert!(!e.plan(Which::Quick).points().is_empty(), "{}", e.name);
            assert!(!e.figures.is_empty() || !e.tables.is_empty(), "{} draws nothing", e.name);
        }
    }
}
