//! The one shape every figure of the benches takes (a [`Row`]: the figure, its baseline
//! from the same run, their ratio, the budget, and the load generator's CPU beside the
//! server's) and the one printer of the table they make. A figure is printed once, here.

use std::time::Duration;

use super::us;

/// CPU a load generator and the server under test used over one measured load.
#[derive(Debug, Clone)]
pub struct Cpu {
    /// What generated the load: `wrk`, `async generator` (this process, one thread), ...
    pub generator_name: String,
    pub generator: Duration,
    /// What served it: `floe serve`, `trivial axum` (in the bench process).
    pub server_name: String,
    pub server: Duration,
    pub requests: u64,
    /// Wall time of the load: how busy each side was.
    pub wall: Duration,
}

impl Cpu {
    /// True when the generator used more CPU than floe serve: the figure then measures the
    /// generator at least as much as floe.
    pub fn generator_bound(&self) -> bool {
        self.generator > self.server && !self.is_baseline()
    }

    /// A trivial server does next to nothing per request, so its client costs about what
    /// it does: expected, and said, but not a flag on a figure of floe.
    pub fn is_baseline(&self) -> bool {
        self.server_name.starts_with("trivial")
    }

    pub fn per_request(d: Duration, requests: u64) -> Duration {
        d / requests.max(1) as u32
    }

    /// `wrk 9 µs vs floe serve 31 µs per request (0.3x; 0.4 + 1.1 cores)`.
    pub fn cell(&self) -> String {
        let wall = self.wall.as_secs_f64().max(1e-9);
        let flag = if self.generator_bound() {
            " **GENERATOR-BOUND**"
        } else if self.generator > self.server {
            " (generator > trivial server)"
        } else {
            ""
        };
        format!(
            "{} {} vs {} {} per request ({:.2}x; {:.2} + {:.2} cores){flag}",
            self.generator_name,
            us(Cpu::per_request(self.generator, self.requests)),
            self.server_name,
            us(Cpu::per_request(self.server, self.requests)),
            self.generator.as_secs_f64() / self.server.as_secs_f64().max(1e-9),
            self.generator.as_secs_f64() / wall,
            self.server.as_secs_f64() / wall,
        )
    }
}

/// One figure: what was measured, against what, within which budget, and who used the CPU.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub name: String,
    pub figure: String,
    /// The baseline measured in the same run, or empty.
    pub baseline: String,
    /// figure / baseline, in the figure's direction (a rate ratio for rates).
    pub ratio: Option<f64>,
    /// The budget (target), or empty for a figure that is reported only.
    pub budget: String,
    pub met: Option<bool>,
    /// Generator vs server CPU of each load behind the row (floe's, then the baseline's).
    pub cpu: Vec<Cpu>,
    /// The breakdown: where the time went, counts, ranges.
    pub note: String,
}

impl Row {
    pub fn new(name: impl Into<String>, figure: impl Into<String>) -> Row {
        Row {
            name: name.into(),
            figure: figure.into(),
            ..Row::default()
        }
    }
    pub fn baseline(mut self, baseline: impl Into<String>, ratio: f64) -> Row {
        self.baseline = baseline.into();
        self.ratio = Some(ratio);
        self
    }
    pub fn budget(mut self, budget: impl Into<String>, met: bool) -> Row {
        self.budget = budget.into();
        self.met = Some(met);
        self
    }
    pub fn cpu(mut self, cpu: Cpu) -> Row {
        self.cpu.push(cpu);
        self
    }
    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// The row printed as it is measured, so a long run shows progress.
    pub fn announce(&self) {
        println!("-- {}: {}", self.name, self.figure);
    }
}

/// Prints the table of rows once, then what it says in numbers.
pub fn print(title: &str, rows: &[Row], div: u64) {
    println!("\n==== {title} ====");
    if div != 1 {
        println!("(counts or durations divided by {div}: NOT the figures of record)");
    }
    println!(
        "| Figure | Measured | Baseline (same run) | Ratio | Budget | Verdict | Generator CPU vs server CPU |"
    );
    println!("|---|---|---|---|---|---|---|");
    let cell = |s: &str| s.replace('|', "\\|");
    for r in rows {
        let verdict = match r.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "—",
        };
        let cpu = r.cpu.iter().map(Cpu::cell).collect::<Vec<_>>().join("; ");
        println!(
            "| {} | {} | {} | {} | {} | {verdict} | {} |",
            cell(&r.name),
            cell(&r.figure),
            if r.baseline.is_empty() {
                "—".to_owned()
            } else {
                cell(&r.baseline)
            },
            r.ratio.map_or("—".to_owned(), |x| format!("{x:.2}x")),
            if r.budget.is_empty() {
                "—"
            } else {
                &r.budget
            },
            if cpu.is_empty() {
                "—".to_owned()
            } else {
                cpu
            }
        );
    }
    println!("\nDetails:");
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("- {}: {}", r.name, r.note);
    }
    let targets = rows.iter().filter(|r| r.met.is_some()).count();
    let met = rows.iter().filter(|r| r.met == Some(true)).count();
    let bound: Vec<&str> = rows
        .iter()
        .filter(|r| r.cpu.iter().any(Cpu::generator_bound))
        .map(|r| r.name.as_str())
        .collect();
    println!("\n{met} of {targets} budgets met.");
    let baselines = rows
        .iter()
        .flat_map(|r| &r.cpu)
        .filter(|c| c.is_baseline() && c.generator > c.server)
        .count();
    if baselines > 0 {
        println!(
            "In {baselines} loads of the trivial server the generator used more CPU than that server (it does next to nothing per request): those baselines are bounded by the generator and the two sharing the cores, so a ratio floe / trivial is an upper bound of floe's share."
        );
    }
    if bound.is_empty() {
        println!("In every load of floe serve the generator used less CPU than the server.");
    } else {
        println!(
            "FLAG: in {} rows a generator used more CPU than floe serve (see the last column): {}",
            bound.len(),
            bound.join("; ")
        );
    }
    println!("==========================================");
}
