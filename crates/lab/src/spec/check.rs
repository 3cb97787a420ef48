//! Experiment files checked before anything runs: every key known at its place, every value of
//! its type and in its range, every name a figure or table refers to one the points will carry.
//!
//! The keys are declared once, here ([`SECTIONS`], [`grid_keys`]); `experiments/README.md`'s
//! tables are generated from them ([`keys_markdown`]) and a test keeps the two equal.

use super::{Experiment, Kind, Value, Which};
use std::collections::BTreeSet;
use std::fmt;

/// The most points one variant of one experiment may have: beyond it a run would take days,
/// and a dispatch experiment's idle counts would no longer fit on one command line.
pub const MAX_POINTS: usize = 10_000;

/// The largest experiment file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// How a key's value is checked (and described in the README).
#[derive(Clone, Copy, Debug)]
pub enum Rule {
    /// A string.
    Text,
    /// `true` or `false`.
    Flag,
    /// A list of strings.
    Words,
    /// A number of seconds (integer or decimal): above 0 (or 0 and above when `zero_ok`), at
    /// most `max`.
    Seconds {
        /// Whether 0 is accepted.
        zero_ok: bool,
        /// The largest value accepted.
        max: f64,
    },
    /// A whole number in `min..=max`.
    Whole {
        /// The smallest value accepted.
        min: i64,
        /// The largest value accepted.
        max: i64,
    },
    /// A number (integer or decimal) above 0 and at most `max`.
    Positive {
        /// The largest value accepted.
        max: f64,
    },
    /// Any finite number (integer or decimal).
    Number,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// One of these whole numbers.
    Among(&'static [i64]),
    /// A server CPU budget: a fraction of one core in (0, 1], `"auto"` or `"none"`.
    Budget,
    /// A table of its own keys.
    Section(&'static [Key]),
    /// A list of tables (`[[figure]]`), each of these keys.
    Sections(&'static [Key]),
    /// A table of grid parameters, each a list of values (the keys depend on the kind).
    Grid,
    /// A table of parameter → value or list of values that points must match.
    Filter,
    /// A table of metric (or `a/b`) → number.
    Bounds,
}

impl Rule {
    /// What the rule accepts, as words completing "expected …".
    pub fn accepted(&self) -> String {
        match *self {
            Rule::Text => "a string in quotes".into(),
            Rule::Flag => "true or false".into(),
            Rule::Words => "a list of strings, e.g. [\"a\", \"b\"]".into(),
            Rule::Seconds { zero_ok: true, max } => format!("seconds from 0 to {max}"),
            Rule::Seconds { zero_ok: false, max } => {
                format!("seconds above 0 and at most {max}")
            }
            Rule::Whole { min, max } => format!("a whole number from {min} to {max}"),
            Rule::Positive { max } => format!("a number above 0 and at most {max}"),
            Rule::Number => "a number".into(),
            Rule::Choice(words) => format!("one of {}", words.join(", ")),
            Rule::Among(nums) => {
                format!("one of {}", nums.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
            }
            Rule::Budget => {
                "a fraction of one core above 0 and at most 1, \"auto\" or \"none\"".into()
            }
            Rule::Section(_) => "a table".into(),
            Rule::Sections(_) => "a list of tables ([[…]])".into(),
            Rule::Grid => "a table of parameter = [values]".into(),
            Rule::Filter => "a table of parameter = value or [values]".into(),
            Rule::Bounds => "a table of \"metric\" = number".into(),
        }
    }

    /// Checks one value; `Err` holds what was expected.
    fn check(&self, v: &toml::Value) -> Result<(), String> {
        use toml::Value as T;
        let ok = match (self, v) {
            (Rule::Text, T::String(_)) | (Rule::Flag, T::Boolean(_)) => true,
            (Rule::Words, T::Array(a)) => a.iter().all(|x| x.is_str()),
            (Rule::Seconds { zero_ok, max }, T::Integer(_) | T::Float(_)) => {
                let x = number(v);
                x.is_finite() && (x > 0.0 || (*zero_ok && x == 0.0)) && x <= *max
            }
            (Rule::Whole { min, max }, T::Integer(i)) => (min..=max).contains(&i),
            (Rule::Positive { max }, T::Integer(_) | T::Float(_)) => {
                let x = number(v);
                x.is_finite() && x > 0.0 && x <= *max
            }
            (Rule::Number, T::Integer(_) | T::Float(_)) => number(v).is_finite(),
            (Rule::Choice(words), T::String(s)) => words.contains(&s.as_str()),
            (Rule::Among(nums), T::Integer(i)) => nums.contains(i),
            (Rule::Budget, T::Integer(_) | T::Float(_)) => {
                let x = number(v);
                x > 0.0 && x <= 1.0
            }
            (Rule::Budget, T::String(s)) => s == "auto" || s == "none",
            (Rule::Section(_) | Rule::Grid | Rule::Filter, T::Table(_)) => true,
            (Rule::Sections(_), T::Array(a)) => a.iter().all(toml::Value::is_table),
            (Rule::Bounds, T::Table(t)) => t
                .values()
                .all(|x| matches!(x, T::Integer(_) | T::Float(_)) && number(x).is_finite()),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(self.accepted())
        }
    }
}

fn number(v: &toml::Value) -> f64 {
    match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        _ => f64::NAN,
    }
}

/// One key of an experiment file.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// Its name.
    pub name: &'static str,
    /// How its value is checked.
    pub rule: Rule,
    /// Its default, or "required".
    pub default: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

const fn key(name: &'static str, rule: Rule, default: &'static str, meaning: &'static str) -> Key {
    Key { name, rule, default, meaning }
}

const REQUIRED: &str = "required";
const SECONDS_PER_POINT: Rule = Rule::Seconds { zero_ok: false, max: 3600.0 };
const WARMUP: Rule = Rule::Seconds { zero_ok: true, max: 3600.0 };
const ROUNDS: Rule = Rule::Whole { min: 1, max: 1000 };
const REPEATS: Rule = Rule::Whole { min: 1, max: 20 };

/// `[server]`.
pub const SERVER: &[Key] = &[
    key("args", Rule::Words, "[]", "extra `ioscale serve` arguments"),
    key(
        "sigqueue_max",
        Rule::Whole { min: 1, max: 16_777_216 },
        "the process's limit",
        "RT-signal queue length for the rtsig mechanisms and hybrid (`--sigqueue-max`); \
         rtsig-perfd gets at least the descriptor limit",
    ),
];

/// `[load]`.
pub const LOAD: &[Key] = &[
    key(
        "mode",
        Rule::Choice(&["sessions", "periodic", "requests"]),
        "\"sessions\"",
        "how the rate is offered: new connections of `calls` requests (httperf's way), the idle \
         connections themselves (Chandra & Mosberger §3.1.1), or requests over `connections` \
         persistent connections",
    ),
    key("calls", Rule::Whole { min: 1, max: 1_000_000 }, "1", "requests per session"),
    key(
        "connections",
        Rule::Whole { min: 1, max: 20_000 },
        "50",
        "persistent connections carrying the rate in `requests` mode",
    ),
    key(
        "idle_period",
        SECONDS_PER_POINT,
        "1",
        "seconds between the requests of an idle connection (sessions and requests modes)",
    ),
    key(
        "ramp",
        Rule::Flag,
        "false",
        "run each mechanism's points as one ramp against one server (hybrid)",
    ),
    key("args", Rule::Words, "[]", "extra `ioscale load` arguments"),
];

/// `[quick]` and `[full]`: a variant's overrides.
pub const VARIANT: &[Key] = &[
    key("mechanisms", Rule::Words, "the experiment's", "mechanisms replacing the experiment's"),
    key("grid", Rule::Grid, "{}", "grid entries replacing the experiment's (same keys as [grid])"),
    key("duration", SECONDS_PER_POINT, "the experiment's", "seconds of load per point"),
    key("warmup", WARMUP, "the experiment's", "seconds of warm-up per point"),
    key("rounds", ROUNDS, "the experiment's", "rounds per point"),
    key("server_cpu", Rule::Budget, "the experiment's", "the server's CPU budget"),
    key("repeats", REPEATS, "the experiment's", "times each point is measured"),
];

/// `[[figure]]`.
pub const FIGURE: &[Key] = &[
    key(
        "id",
        Rule::Text,
        REQUIRED,
        "short id: letters, digits, '-' and '_' (file and anchor names)",
    ),
    key(
        "reproduces",
        Rule::Text,
        REQUIRED,
        "the paper figure, e.g. \"Chandra & Mosberger 2001, Fig. 3\"",
    ),
    key("title", Rule::Text, REQUIRED, "title above the plot"),
    key("x", Rule::Text, REQUIRED, "parameter (or metric) on the x axis"),
    key("x_label", Rule::Text, REQUIRED, "label of the x axis"),
    key("y", Rule::Text, REQUIRED, "metric on the y axis"),
    key("y_label", Rule::Text, REQUIRED, "label of the y axis"),
    key("series", Rule::Text, "\"mechanism\"", "what makes a line: `mechanism` or a parameter"),
    key("where", Rule::Filter, "{}", "only points whose parameters (or `mechanism`) equal these"),
    key("y_err", Rule::Text, "none", "metric drawn as bars around y (e.g. a standard deviation)"),
    key(
        "y_extra",
        Rule::Words,
        "[]",
        "metrics drawn dashed in each line's colour (e.g. min and max)",
    ),
    key("log_x", Rule::Flag, "false", "logarithmic x axis"),
    key("log_y", Rule::Flag, "false", "logarithmic y axis"),
    key("paper_finding", Rule::Text, REQUIRED, "what the paper found"),
    key("marks", Rule::Text, "none", "a list drawn as vertical marks (`switch_times`, hybrid)"),
    key(
        "rule",
        Rule::Sections(VERDICT_RULE),
        "none",
        "the paper's finding as checkable rules: the figure's verdict (`[[figure.rule]]`)",
    ),
    key(
        "in_summary",
        Rule::Flag,
        "false (the first figure)",
        "this figure's lines make the experiment's table in summary.md",
    ),
];

/// `[[figure.rule]]` and `[[table.rule]]`: one checkable statement of the paper's finding,
/// judged on the VALID points only (`crates/lab/src/report/verdict.rs`).
pub const VERDICT_RULE: &[Key] = &[
    key(
        "kind",
        Rule::Choice(&["growth", "compare", "range", "zero"]),
        REQUIRED,
        "growth: y at the largest x over y at the smallest x, per line; compare: each `series` \
         line's y over each `than` line's; range: y (or `of` it) within the bounds; zero: y is 0 \
         (at most `at_most`) at every point",
    ),
    key("says", Rule::Text, REQUIRED, "the finding in words, as the verdict table prints it"),
    key(
        "series",
        Rule::Words,
        "[] (every line)",
        "the lines it judges, as the legend names them (a mechanism, or e.g. `inactive=251`)",
    ),
    key("than", Rule::Words, "[]", "compare: the lines the `series` are compared with"),
    key(
        "metric",
        Rule::Text,
        "the figure's y",
        "the value judged: a metric or parameter, or `a/b` of two (e.g. `reply_rate_avg/rate`); \
         required in a table's rules",
    ),
    key(
        "x",
        Rule::Text,
        "the figure's x",
        "the x the range is taken on (e.g. `rate_fraction` where the figure draws `rate`); \
         required in a table's rules",
    ),
    key("where", Rule::Filter, "{}", "only points whose parameters also match these"),
    key(
        "below",
        Rule::Bounds,
        "{}",
        "only points whose value of each metric (or `a/b`) is below its bound, e.g. \
         `{ \"reply_rate_avg/rate\" = 0.95 }` (past the server's capacity); a line with none is \
         not measured",
    ),
    key("from", Rule::Number, "none", "the smallest x judged"),
    key("to", Rule::Number, "none", "the largest x judged"),
    key("at_least", Rule::Number, "none", "lower bound (on the growth, the ratio, or the value)"),
    key("at_most", Rule::Number, "none (zero: 0)", "upper bound"),
    key(
        "of",
        Rule::Choice(&["each", "max", "min", "mean", "first", "last"]),
        "\"each\"",
        "range and compare: every point (every common x) must pass, or an aggregate of each line",
    ),
    key(
        "tolerance",
        Rule::Number,
        "0",
        "slack on the bounds: a fraction of the bound (0.1 = 10%), absolute where the bound is 0",
    ),
    key(
        "reason",
        Rule::Text,
        "none",
        "why this machine or run may differ from the paper; printed where a measured line fails",
    ),
];

/// `[[table]]`.
pub const TABLE: &[Key] = &[
    key("id", Rule::Text, REQUIRED, "short id"),
    key("reproduces", Rule::Text, REQUIRED, "the paper table"),
    key("title", Rule::Text, REQUIRED, "title"),
    key("rows", Rule::Words, REQUIRED, "parameters that make the rows, in order"),
    key("columns", Rule::Words, REQUIRED, "metrics that make the columns"),
    key("where", Rule::Filter, "{}", "only points whose parameters (or `mechanism`) equal these"),
    key("paper_finding", Rule::Text, REQUIRED, "what the paper found"),
    key(
        "rule",
        Rule::Sections(VERDICT_RULE),
        "none",
        "the paper's finding as checkable rules: the table's verdict (`[[table.rule]]`)",
    ),
];

/// The top level of an experiment file.
pub const TOP: &[Key] = &[
    key("name", Rule::Text, REQUIRED, "the file's stem; what `ioscale lab NAME` takes"),
    key("summary", Rule::Text, REQUIRED, "one line for `ioscale lab list`"),
    key("reproduces", Rule::Text, REQUIRED, "the paper figures and tables it reproduces"),
    key("kind", Rule::Choice(&["dispatch", "http", "herd"]), REQUIRED, "the runner it needs"),
    key(
        "mechanisms",
        Rule::Words,
        REQUIRED,
        "mechanisms compared (wait modes for herd); one not in this build is recorded as not \
         measured, with the reason",
    ),
    key(
        "nginx",
        Rule::Flag,
        "false",
        "also run nginx as a reference line, when installed (http only)",
    ),
    key("grid", Rule::Grid, "{}", "parameter = [values]; every combination is one point"),
    key(
        "duration",
        SECONDS_PER_POINT,
        "3",
        "seconds of load per point (dispatch: of cycling per round, at most 60)",
    ),
    key("warmup", WARMUP, "0", "seconds of warm-up per point, excluded from the statistics"),
    key("rounds", ROUNDS, "3", "rounds per point (dispatch)"),
    key(
        "repeats",
        REPEATS,
        "1 (quick), 3 (full)",
        "times each point is measured (http, not a ramp), in interleaved rounds: every point \
         once, then every point again; each record carries its `round`, the report draws the \
         median and the spread",
    ),
    key(
        "server_cpu",
        Rule::Budget,
        "none (`--server-cpu` overrides)",
        "the server's CPU budget (http): a cgroup CPU-bandwidth limit, so the server is the \
         weaker side as in the papers",
    ),
    key(
        "knee",
        Rule::Text,
        "the reference (epoll) server's capacity",
        "a mechanism of the experiment whose own knee places the rates (http): the highest rate \
         at which it still replies to 95% of the offered rate with no RT-signal queue overflow, \
         under the same budget",
    ),
    key("server", Rule::Section(SERVER), "{}", "server settings (http)"),
    key("load", Rule::Section(LOAD), "{}", "load settings (http)"),
    key("quick", Rule::Section(VARIANT), "{}", "the quick variant (`ioscale lab`)"),
    key("full", Rule::Section(VARIANT), "{}", "the full variant (`ioscale lab --full`)"),
    key("figure", Rule::Sections(FIGURE), "none", "figures drawn from the points"),
    key("table", Rule::Sections(TABLE), "none", "tables drawn from the points"),
];

/// The sections of an experiment file, by the name the README gives them.
pub const SECTIONS: &[(&str, &[Key])] = &[
    ("top level", TOP),
    ("[server]", SERVER),
    ("[load]", LOAD),
    ("[quick] and [full]", VARIANT),
    ("[[figure]]", FIGURE),
    ("[[table]]", TABLE),
    ("[[figure.rule]] and [[table.rule]]", VERDICT_RULE),
];

const IDLE: Key = key(
    "idle",
    Rule::Whole { min: 0, max: 1_000_000 },
    "0",
    "idle connections (dispatch: idle descriptors registered)",
);

const HTTP_GRID: &[Key] = &[
    IDLE,
    key(
        "inactive",
        Rule::Whole { min: 0, max: 1_000_000 },
        "0",
        "inactive connections (Provos & Lever)",
    ),
    key(
        "file_size",
        Rule::Among(&[1, 92, 6144]),
        "1",
        "bytes of the file requested (the lab's document root)",
    ),
    key(
        "rate",
        Rule::Positive { max: 10_000_000.0 },
        "none",
        "request (or session) rate per second",
    ),
    key(
        "rate_fraction",
        Rule::Positive { max: 100.0 },
        "none",
        "rate as a fraction of the capacity calibrated on this machine",
    ),
];

const HERD_GRID: &[Key] = &[
    key(
        "waiters",
        Rule::Whole { min: 1, max: 100_000 },
        "1, 16, 64, 256, 1024 in one point",
        "processes waiting on the listening socket",
    ),
    key(
        "dups",
        Rule::Whole { min: 0, max: 1_000_000 },
        "0",
        "duplicates of the listener in each wait set",
    ),
    key("connects", Rule::Whole { min: 1, max: 100_000 }, "100", "timed connections per point"),
    key("warmup", Rule::Whole { min: 0, max: 10_000 }, "5", "untimed connections before them"),
];

/// The grid parameters a kind accepts.
pub fn grid_keys(kind: Kind) -> &'static [Key] {
    match kind {
        Kind::Dispatch => std::slice::from_ref(&IDLE),
        Kind::Http => HTTP_GRID,
        Kind::Herd => HERD_GRID,
    }
}

/// What is wrong with an experiment file (the file itself is named by [`super::SpecError`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    /// The file could not be read.
    Read(String),
    /// The file is larger than [`MAX_FILE_BYTES`].
    TooLarge {
        /// Its size.
        bytes: u64,
    },
    /// It is not TOML.
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// The parser's words.
        message: String,
    },
    /// A key no experiment file has at that place.
    UnknownKey {
        /// Its full name, e.g. `load.cals` or `figure[2].titel`.
        key: String,
        /// The keys accepted there.
        accepted: Vec<String>,
    },
    /// A required key is absent.
    Missing {
        /// Its full name.
        key: String,
    },
    /// A value of the wrong type or out of range.
    BadValue {
        /// Its full name.
        key: String,
        /// The value as written.
        value: String,
        /// What is accepted.
        accepted: String,
    },
    /// A value that is well-formed but does not fit the rest of the file.
    Inconsistent {
        /// Its full name.
        key: String,
        /// Why, and what would be accepted.
        message: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Read(e) => write!(f, "cannot be read: {e}"),
            Problem::TooLarge { bytes } => write!(
                f,
                "is {bytes} bytes, more than an experiment file may be ({MAX_FILE_BYTES} bytes)"
            ),
            Problem::Syntax { line, message } => write!(f, "line {line}: {message}"),
            Problem::UnknownKey { key, accepted } => {
                let last = key.rsplit('.').next().unwrap_or(key);
                let last = last.split('[').next().unwrap_or(last);
                write!(f, "unknown key `{key}`")?;
                if let Some(near) =
                    ioscale_flags::nearest(last, accepted.iter().map(String::as_str))
                {
                    write!(f, " (did you mean `{near}`?)")?;
                }
                write!(f, "; accepted here: {}", accepted.join(", "))
            }
            Problem::Missing { key } => write!(f, "`{key}` is missing; it is required"),
            Problem::BadValue { key, value, accepted } => {
                write!(f, "`{key}` = {value} is not accepted: expected {accepted}")
            }
            Problem::Inconsistent { key, message } => write!(f, "`{key}`: {message}"),
        }
    }
}

/// A value as written, cut short if long.
fn shown(v: &toml::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Checks the raw table of an experiment file against the declared keys: unknown keys,
/// missing required ones, and each value's type and range.
pub fn keys(doc: &toml::Table) -> Result<(), Problem> {
    table(doc, TOP, "")?;
    // The kind was checked above; the grids' keys depend on it.
    let kind = match doc.get("kind").and_then(toml::Value::as_str) {
        Some("dispatch") => Kind::Dispatch,
        Some("herd") => Kind::Herd,
        _ => Kind::Http,
    };
    let grids = [
        ("grid", doc.get("grid")),
        ("quick.grid", sub(doc, "quick", "grid")),
        ("full.grid", sub(doc, "full", "grid")),
    ];
    for (name, g) in grids {
        if let Some(toml::Value::Table(g)) = g {
            grid(g, grid_keys(kind), name)?;
        }
    }
    Ok(())
}

fn sub<'a>(doc: &'a toml::Table, section: &str, key: &str) -> Option<&'a toml::Value> {
    doc.get(section)?.as_table()?.get(key)
}

fn names(keys: &[Key]) -> Vec<String> {
    keys.iter().map(|k| k.name.to_string()).collect()
}

fn table(t: &toml::Table, keys: &'static [Key], prefix: &str) -> Result<(), Problem> {
    for (name, v) in t {
        let Some(k) = keys.iter().find(|k| k.name == name) else {
            return Err(Problem::UnknownKey { key: join(prefix, name), accepted: names(keys) });
        };
        let full = join(prefix, name);
        k.rule.check(v).map_err(|accepted| Problem::BadValue {
            key: full.clone(),
            value: shown(v),
            accepted,
        })?;
        match (k.rule, v) {
            (Rule::Section(inner), toml::Value::Table(t)) => table(t, inner, &full)?,
            (Rule::Sections(inner), toml::Value::Array(a)) => {
                for (i, x) in a.iter().enumerate() {
                    if let toml::Value::Table(t) = x {
                        table(t, inner, &format!("{full}[{}]", i + 1))?;
                    }
                }
            }
            _ => {}
        }
    }
    for k in keys.iter().filter(|k| k.default == REQUIRED) {
        if !t.contains_key(k.name) {
            return Err(Problem::Missing { key: join(prefix, k.name) });
        }
    }
    Ok(())
}

fn grid(g: &toml::Table, keys: &'static [Key], prefix: &str) -> Result<(), Problem> {
    for (name, v) in g {
        let full = join(prefix, name);
        let Some(k) = keys.iter().find(|k| k.name == name) else {
            return Err(Problem::UnknownKey { key: full, accepted: names(keys) });
        };
        let Some(values) = v.as_array() else {
            return Err(Problem::BadValue {
                key: full,
                value: shown(v),
                accepted: format!("a list of values, e.g. [1, 2], each {}", k.rule.accepted()),
            });
        };
        if values.is_empty() {
            return Err(Problem::BadValue {
                key: full,
                value: "[]".into(),
                accepted: format!("at least one value, each {}", k.rule.accepted()),
            });
        }
        for (i, x) in values.iter().enumerate() {
            k.rule.check(x).map_err(|accepted| Problem::BadValue {
                key: format!("{full}[{}]", i + 1),
                value: shown(x),
                accepted,
            })?;
        }
    }
    Ok(())
}

/// Checks what the keys alone cannot: values that must agree with each other, the size of the
/// grid, and the names figures and tables refer to.
pub fn coherence(e: &Experiment) -> Result<(), Problem> {
    let bad = |key: &str, message: String| Problem::Inconsistent { key: key.into(), message };
    let mut seen = BTreeSet::new();
    for m in &e.mechanisms {
        if m.is_empty() || !seen.insert(m) {
            return Err(bad("mechanisms", format!("'{m}' is empty or listed twice")));
        }
    }
    if e.kind != Kind::Http
        && [e.server_cpu, e.quick.server_cpu, e.full.server_cpu].iter().any(Option::is_some)
    {
        return Err(bad(
            "server_cpu",
            "a server CPU budget applies to http experiments only".into(),
        ));
    }
    if let Some(k) = &e.knee {
        if e.kind != Kind::Http || !e.mechanisms.contains(k) {
            return Err(bad(
                "knee",
                format!("'{k}' is not one of this http experiment's mechanisms"),
            ));
        }
    }
    if (e.kind != Kind::Http || e.load.ramp)
        && [e.repeats, e.quick.repeats, e.full.repeats].iter().any(Option::is_some)
    {
        return Err(bad(
            "repeats",
            "only http experiments other than a ramp repeat points (dispatch and herd repeat \
             inside their tool: use `rounds`)"
                .into(),
        ));
    }
    if e.nginx && e.kind != Kind::Http {
        return Err(bad("nginx", "a reference nginx line applies to http experiments only".into()));
    }
    for which in [Which::Quick, Which::Full] {
        variant(e, which)?;
    }
    for (i, f) in e.figures.iter().enumerate() {
        figure(e, f, &format!("figure[{}]", i + 1))?;
    }
    for (i, t) in e.tables.iter().enumerate() {
        let at = format!("table[{}]", i + 1);
        let params = params(e);
        for r in &t.rows {
            name_in(&format!("{at}.rows"), r, &params, "a parameter of the points")?;
        }
        for c in &t.columns {
            metric(e, &format!("{at}.columns"), c)?;
        }
        filter(e, &t.filter, &at)?;
        verdict_rules(e, &t.rules, true, &at)?;
    }
    Ok(())
}

/// One variant's effective plan: a rate for http, no repeated values, at most
/// [`MAX_POINTS`] points.
fn variant(e: &Experiment, which: Which) -> Result<(), Problem> {
    let plan = e.plan(which);
    let section = which.to_string();
    let at = |k: &str| -> String {
        let overridden = match which {
            Which::Quick => e.quick.grid.contains_key(k),
            Which::Full => e.full.grid.contains_key(k),
        };
        if overridden {
            format!("{section}.grid.{k}")
        } else {
            format!("grid.{k}")
        }
    };
    if plan.mechanisms.is_empty() {
        return Err(Problem::Inconsistent {
            key: format!("{section}.mechanisms"),
            message: "is empty: give at least one mechanism".into(),
        });
    }
    if e.kind == Kind::Dispatch && plan.duration > 60.0 {
        let overridden = match which {
            Which::Quick => e.quick.duration.is_some(),
            Which::Full => e.full.duration.is_some(),
        };
        return Err(Problem::BadValue {
            key: if overridden { format!("{section}.duration") } else { "duration".into() },
            value: plan.duration.to_string(),
            accepted: "seconds of cycling per round above 0 and at most 60 (dispatch)".into(),
        });
    }
    if e.kind == Kind::Dispatch && !plan.grid.contains_key("idle") {
        return Err(Problem::Inconsistent {
            key: format!("{section}.grid"),
            message: "a dispatch experiment needs `idle` (the idle descriptor counts)".into(),
        });
    }
    if e.kind == Kind::Http {
        let (r, f) = (plan.grid.contains_key("rate"), plan.grid.contains_key("rate_fraction"));
        if r == f {
            return Err(Problem::Inconsistent {
                key: format!("{section}.grid"),
                message: "an http experiment needs exactly one of `rate` (per second) and \
                          `rate_fraction` (of the calibrated capacity)"
                    .into(),
            });
        }
        if e.load.ramp && !f {
            return Err(Problem::Inconsistent {
                key: "load.ramp".into(),
                message: "a ramp steps through `rate_fraction`: give grid.rate_fraction".into(),
            });
        }
    }
    for (k, vals) in &plan.grid {
        // A ramp goes up and down: its fractions repeat on purpose.
        if e.load.ramp && k == "rate_fraction" {
            continue;
        }
        for (i, v) in vals.iter().enumerate() {
            if vals[..i].contains(v) {
                return Err(Problem::Inconsistent {
                    key: at(k),
                    message: format!("lists {v} twice; each value makes its own points"),
                });
            }
        }
    }
    let points = plan
        .grid
        .values()
        .fold(plan.mechanisms.len() as f64 * f64::from(plan.repeats), |n, v| n * v.len() as f64);
    if points > MAX_POINTS as f64 {
        return Err(Problem::Inconsistent {
            key: format!("{section}.grid"),
            message: format!(
                "the {section} variant has {points:.0} points (mechanisms × every grid \
                 combination × repeats); at most {MAX_POINTS} are accepted"
            ),
        });
    }
    Ok(())
}

/// The parameters the points of an experiment carry: its grid keys (in any variant), the
/// absolute `rate` of http points and a ramp's `step`.
fn params(e: &Experiment) -> Vec<String> {
    let mut p: BTreeSet<String> = e.grid.keys().cloned().collect();
    p.extend(e.quick.grid.keys().cloned());
    p.extend(e.full.grid.keys().cloned());
    if e.kind == Kind::Http {
        p.insert("rate".into());
        if e.load.ramp {
            p.insert("step".into());
        } else {
            p.insert("round".into());
        }
    }
    p.into_iter().collect()
}

fn name_in(key: &str, name: &str, among: &[String], what: &str) -> Result<(), Problem> {
    if among.iter().any(|a| a == name) {
        return Ok(());
    }
    Err(Problem::Inconsistent {
        key: key.into(),
        message: format!("'{name}' is not {what}: expected one of {}", among.join(", ")),
    })
}

/// A metric a figure or table draws: for http, one the points record; the other kinds record
/// every number their tool prints, so any name is taken.
fn metric(e: &Experiment, key: &str, name: &str) -> Result<(), Problem> {
    if e.kind != Kind::Http {
        return Ok(());
    }
    let names: Vec<String> =
        crate::kinds::http::metric_names().into_iter().map(String::from).collect();
    name_in(key, name, &names, "a metric of http points")
}

fn figure(e: &Experiment, f: &super::Figure, at: &str) -> Result<(), Problem> {
    let bad =
        |key: &str, message: String| Problem::Inconsistent { key: format!("{at}.{key}"), message };
    if f.id.is_empty() || !f.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad("id", format!("'{}' must be letters, digits, '-' or '_'", f.id)));
    }
    if e.figures.iter().filter(|g| g.id == f.id).count() > 1 {
        return Err(bad("id", format!("'{}' is the id of another figure too", f.id)));
    }
    if f.y.is_empty() {
        return Err(bad("y", "is empty: name the metric on the y axis".into()));
    }
    let params = params(e);
    let x_ok = params.contains(&f.x) || (e.kind == Kind::Http && metric(e, "", &f.x).is_ok());
    if !x_ok {
        let mut accepted = params.clone();
        if e.kind == Kind::Http {
            accepted.push("or a metric such as t".into());
        }
        return Err(bad(
            "x",
            format!(
                "'{}' is not a parameter of the points: expected one of {}",
                f.x,
                accepted.join(", ")
            ),
        ));
    }
    let mut series = vec!["mechanism".to_string()];
    series.extend(params.iter().cloned());
    name_in(&format!("{at}.series"), &f.series, &series, "`mechanism` or a parameter")?;
    metric(e, &format!("{at}.y"), &f.y)?;
    if let Some(m) = &f.y_err {
        metric(e, &format!("{at}.y_err"), m)?;
    }
    for m in &f.y_extra {
        metric(e, &format!("{at}.y_extra"), m)?;
    }
    if let Some(m) = &f.marks {
        let lists: Vec<String> =
            crate::kinds::http::POINT_LISTS.iter().map(|s| s.to_string()).collect();
        name_in(&format!("{at}.marks"), m, &lists, "a list the points record")?;
    }
    filter(e, &f.filter, at)?;
    verdict_rules(e, &f.rules, false, at)
}

/// A figure's or table's verdict rules: each consistent in itself, its metric (each side of
/// `a/b`) a metric or parameter of the points, its x a parameter (or a metric), its `where` as
/// a figure's.
fn verdict_rules(
    e: &Experiment,
    rules: &[super::Rule],
    table: bool,
    at: &str,
) -> Result<(), Problem> {
    let params = params(e);
    for (j, r) in rules.iter().enumerate() {
        let at = format!("{at}.rule[{}]", j + 1);
        r.check(table).map_err(|message| Problem::Inconsistent { key: at.clone(), message })?;
        // Each name the rule reads, with the key it is read from.
        let judged = r.metric.iter().flat_map(|m| m.split('/')).chain(r.x.as_deref());
        let mut names: Vec<(String, &str)> = judged.map(|n| (format!("{at}.metric"), n)).collect();
        for m in r.below.keys() {
            names.extend(m.split('/').map(|n| (format!("{at}.below.{m}"), n)));
        }
        for (key, name) in names {
            let name = name.trim();
            if !params.iter().any(|p| p == name) {
                metric(e, &key, name)?;
            }
        }
        filter(e, &r.filter, &at)?;
    }
    Ok(())
}

/// A `where` table: each key `mechanism` or a parameter, each value one some variant has.
fn filter(
    e: &Experiment,
    filter: &std::collections::BTreeMap<String, Value>,
    at: &str,
) -> Result<(), Problem> {
    let params = params(e);
    for (k, v) in filter {
        let key = format!("{at}.where.{k}");
        let wanted: Vec<&Value> = match v {
            Value::Any(list) => list.iter().collect(),
            one => vec![one],
        };
        let known: Vec<Value> = if k == "mechanism" {
            let mut m: Vec<Value> = e.mechanisms.iter().cloned().map(Value::Word).collect();
            m.extend(e.quick.mechanisms.iter().flatten().cloned().map(Value::Word));
            m.extend(e.full.mechanisms.iter().flatten().cloned().map(Value::Word));
            if e.nginx {
                m.push(Value::Word("nginx".into()));
            }
            m
        } else if params.contains(k) {
            let mut vals: Vec<Value> = Vec::new();
            for g in [&e.grid, &e.quick.grid, &e.full.grid] {
                vals.extend(g.get(k).into_iter().flatten().cloned());
            }
            if vals.is_empty() {
                // A derived parameter (the absolute rate): its values are known only when run.
                continue;
            }
            vals
        } else {
            let mut accepted = vec!["mechanism".to_string()];
            accepted.extend(params.iter().cloned());
            return Err(Problem::UnknownKey { key, accepted });
        };
        for w in wanted {
            if !known.iter().any(|x| same(x, w)) {
                let list: Vec<String> = known.iter().map(Value::to_string).collect();
                return Err(Problem::Inconsistent {
                    key,
                    message: format!(
                        "{w} matches no point of any variant: expected one of {}",
                        list.join(", ")
                    ),
                });
            }
        }
    }
    Ok(())
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Num(x), Value::Num(y)) => (x - y).abs() < 1e-9,
        _ => a == b,
    }
}

/// The README's tables of keys, generated from the declarations above.
pub fn keys_markdown() -> String {
    let mut s = String::new();
    let row = |s: &mut String, k: &Key| {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            k.name,
            k.rule.accepted().replace('|', "\\|"),
            k.default,
            k.meaning
        ));
    };
    for (name, keys) in SECTIONS {
        s.push_str(&format!(
            "\n### {name}\n\n| key | accepted | default | meaning |\n|---|---|---|---|\n"
        ));
        for k in *keys {
            row(&mut s, k);
        }
    }
    for (kind, name) in [(Kind::Dispatch, "dispatch"), (Kind::Http, "http"), (Kind::Herd, "herd")] {
        s.push_str(&format!(
            "\n### [grid] of a `{name}` experiment\n\nEach key takes a list of values; each value is checked as below.\n\n| key | accepted | default | meaning |\n|---|---|---|---|\n"
        ));
        for k in grid_keys(kind) {
            row(&mut s, k);
        }
    }
    s.push_str(
        "\n### Metrics of an `http` point\n\nWhat a figure's `y`, `y_err`, `y_extra` (and `x`) \
         and a table's `columns` may name in an http experiment:\n\n",
    );
    let names: Vec<String> =
        crate::kinds::http::metric_names().iter().map(|n| format!("`{n}`")).collect();
    s.push_str(&names.join(", "));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use std::path::Path;

    const GOOD: &str = r#"
name = "t"
summary = "s"
reproduces = "r"
kind = "http"
mechanisms = ["epoll", "poll"]
duration = 2
[load]
calls = 2
[grid]
idle = [0, 100]
rate_fraction = [0.5]
[quick]
grid.idle = [0]
[[figure]]
id = "f"
reproduces = "Fig. 1"
title = "T"
x = "idle"
x_label = "idle"
y = "reply_rate_avg"
y_label = "replies/s"
paper_finding = "p"
where = { idle = 100 }
"#;

    /// The problem with GOOD after replacing `from` by `to` (which must occur).
    fn problem(from: &str, to: &str) -> Problem {
        assert!(GOOD.contains(from), "{from}");
        let text = GOOD.replacen(from, to, 1);
        let p = parse(&text, "t").expect_err(&text);
        let s = p.to_string();
        assert!(!s.contains('\n'), "one line: {s}");
        p
    }

    fn bad_value(p: Problem) -> (String, String) {
        match p {
            Problem::BadValue { key, value, .. } => (key, value),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn the_good_sample_is_good() {
        let e = parse(GOOD, "t").unwrap();
        assert_eq!(e.plan(Which::Quick).points().len(), 2);
    }

    #[test]
    fn durations_must_be_positive_and_finite() {
        for v in ["-1", "0", "nan", "inf", "\"2s\"", "3601"] {
            let p = problem("duration = 2", &format!("duration = {v}"));
            assert_eq!(bad_value(p.clone()).0, "duration", "{p}");
            assert!(p.to_string().contains("seconds above 0"), "{p}");
        }
        let p = problem("[quick]\n", "[quick]\nwarmup = -0.5\n");
        assert_eq!(bad_value(p).0, "quick.warmup");
        let p = problem("calls = 2", "calls = 2\nidle_period = 0");
        assert_eq!(bad_value(p).0, "load.idle_period");
    }

    #[test]
    fn counts_must_be_in_range() {
        let p = problem("duration = 2", "duration = 2\nrounds = 0");
        assert_eq!(bad_value(p.clone()).0, "rounds", "{p}");
        assert!(p.to_string().contains("from 1 to 1000"), "{p}");
        let p = problem("idle = [0, 100]", "idle = [0, -5]");
        assert_eq!(bad_value(p).0, "grid.idle[2]");
        let p = problem("grid.idle = [0]", "grid.idle = [1.5]");
        assert_eq!(bad_value(p).0, "quick.grid.idle[1]");
        let p = problem("idle = [0, 100]", "idle = []");
        assert_eq!(bad_value(p).0, "grid.idle");
        let p = problem("idle = [0, 100]", "idle = [0, 100]\nfile_size = [100]");
        let s = p.to_string();
        assert!(s.contains("one of 1, 92, 6144"), "{s}");
        let p = problem("calls = 2", "calls = 0");
        assert_eq!(bad_value(p).0, "load.calls");
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_accepted_ones() {
        for (from, to, key, near) in [
            ("summary = \"s\"", "sumary = \"s\"", "sumary", "summary"),
            ("idle = [0, 100]", "idel = [0, 100]", "grid.idel", "idle"),
            ("grid.idle = [0]", "grid.idel = [0]", "quick.grid.idel", "idle"),
            ("title = \"T\"", "titel = \"T\"", "figure[1].titel", "title"),
            ("where = { idle = 100 }", "where = { idel = 100 }", "figure[1].where.idel", "idle"),
            ("calls = 2", "cals = 2", "load.cals", "calls"),
        ] {
            let p = problem(from, to);
            let s = p.to_string();
            match &p {
                Problem::UnknownKey { key: k, accepted } => {
                    assert_eq!(k, key);
                    assert!(accepted.iter().any(|a| a == near), "{s}");
                }
                other => panic!("{from}: {other}"),
            }
            assert!(s.contains(&format!("did you mean `{near}`")), "{s}");
        }
        // A herd grid takes herd's parameters, not http's.
        let herd = GOOD.replace("kind = \"http\"", "kind = \"herd\"");
        let p = parse(&herd, "t").unwrap_err();
        assert!(matches!(&p, Problem::UnknownKey { key, .. } if key == "grid.idle"), "{p}");
    }

    #[test]
    fn missing_keys_and_names_that_point_nowhere() {
        assert!(matches!(
            problem("summary = \"s\"\n", ""),
            Problem::Missing { key } if key == "summary"
        ));
        let p = problem("y = \"reply_rate_avg\"", "y = \"reply_rate\"");
        assert!(p.to_string().contains("not a metric of http points"), "{p}");
        let p = problem("where = { idle = 100 }", "where = { idle = 7 }");
        assert!(p.to_string().contains("matches no point"), "{p}");
        let p = problem("x = \"idle\"", "x = \"idel\"");
        assert!(p.to_string().contains("figure[1].x"), "{p}");
        let p = problem("rate_fraction = [0.5]", "rate_fraction = [0.5]\nrate = [10]");
        assert!(p.to_string().contains("exactly one of `rate`"), "{p}");
    }

    #[test]
    fn server_cpu_budgets() {
        for ok in ["0.25", "1", "\"auto\"", "\"none\""] {
            let text = GOOD.replace("duration = 2", &format!("duration = 2\nserver_cpu = {ok}"));
            parse(&text, "t").unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["0", "1.5", "-1", "\"half\""] {
            let p = problem("duration = 2", &format!("duration = 2\nserver_cpu = {bad}"));
            assert_eq!(bad_value(p).0, "server_cpu");
        }
        let e = parse(&GOOD.replace("[quick]\n", "[quick]\nserver_cpu = 0.5\n"), "t").unwrap();
        assert_eq!(e.plan(Which::Quick).server_cpu, Some(crate::spec::ServerCpu::Fraction(0.5)));
        assert_eq!(e.plan(Which::Full).server_cpu, None);
    }

    #[test]
    fn a_knee_must_be_one_of_the_mechanisms() {
        let e = parse(&GOOD.replace("duration = 2", "duration = 2\nknee = \"poll\""), "t").unwrap();
        assert_eq!(e.knee.as_deref(), Some("poll"));
        let p = problem("duration = 2", "duration = 2\nknee = \"rtsig\"");
        match p {
            Problem::Inconsistent { key, message } => {
                assert_eq!(key, "knee");
                assert!(message.contains("'rtsig'"), "{message}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn repeats_interleave_rounds_in_full() {
        let e = parse(GOOD, "t").unwrap();
        assert_eq!(e.plan(Which::Quick).repeats, 1);
        assert!(e.plan(Which::Quick).points().iter().all(|p| !p.params.contains_key("round")));
        let full = e.plan(Which::Full).points();
        // 2 mechanisms × 2 idle × 1 rate, three rounds, round-major.
        assert_eq!(full.len(), 12);
        let rounds: Vec<f64> = full.iter().map(|p| p.num("round").unwrap()).collect();
        assert_eq!(rounds, [1., 1., 1., 1., 2., 2., 2., 2., 3., 3., 3., 3.]);
        assert_eq!(full[0].params.get("idle"), full[4].params.get("idle"));
        let keys: BTreeSet<String> = full.iter().map(|p| p.key("t", Which::Full)).collect();
        assert_eq!(keys.len(), 12, "each round its own resume key");
        let e = parse(&GOOD.replace("[quick]\n", "[quick]\nrepeats = 2\n"), "t").unwrap();
        assert_eq!(e.plan(Which::Quick).points().len(), 4);
        let dispatch = GOOD
            .replace("kind = \"http\"", "kind = \"dispatch\"")
            .replace("rate_fraction = [0.5]\n", "")
            .replace("[load]\ncalls = 2\n", "")
            .replace("y = \"reply_rate_avg\"", "y = \"ns_per_cycle\"");
        assert_eq!(parse(&dispatch, "t").unwrap().plan(Which::Full).repeats, 1);
        let p = parse(&dispatch.replace("duration = 2", "duration = 2\nrepeats = 3"), "t");
        assert!(p.unwrap_err().to_string().contains("use `rounds`"));
    }

    #[test]
    fn syntax_errors_name_the_line_in_one_sentence() {
        let p = problem("duration = 2", "duration = [");
        assert!(matches!(p, Problem::Syntax { line: 8, .. }), "{p}");
    }

    #[test]
    fn grids_are_capped() {
        let many: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let fr: Vec<String> = (1..=1000).map(|i| format!("{}", i as f64 / 100.0)).collect();
        let text = GOOD
            .replace("idle = [0, 100]", &format!("idle = [{}]", many.join(",")))
            .replace("rate_fraction = [0.5]", &format!("rate_fraction = [{}]", fr.join(",")));
        let p = parse(&text, "t").unwrap_err();
        let s = p.to_string();
        assert!(s.contains("6000000 points") && s.contains("at most 10000"), "{s}");
        let p = problem("idle = [0, 100]", "idle = [0, 0]");
        assert!(p.to_string().contains("lists 0 twice"), "{p}");
    }

    #[test]
    fn the_readme_lists_every_key() {
        let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/README.md");
        let text = std::fs::read_to_string(&readme).unwrap_or_default();
        let generated = keys_markdown();
        let (b, e) = ("<!-- keys:begin -->", "<!-- keys:end -->");
        let inside = text.split_once(b).and_then(|(_, r)| r.split_once(e)).map(|(m, _)| m);
        if inside != Some(generated.as_str()) {
            if std::env::var_os("IOSCALE_BLESS").is_some() {
                let (head, rest) = text.split_once(b).expect("README has the markers");
                let (_, tail) = rest.split_once(e).expect("README has the end marker");
                std::fs::write(&readme, format!("{head}{b}{generated}{e}{tail}")).unwrap();
            } else {
                panic!(
                    "{} is out of date with spec/check.rs: run `IOSCALE_BLESS=1 cargo test -p \
                     ioscale-lab the_readme_lists_every_key`",
                    readme.display()
                );
            }
        }
    }
}
