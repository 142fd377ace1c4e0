//! What a run measured, three ways: a table on the terminal, a JSON file, and an SVG plot per
//! phase (latency percentiles, overhead and throughput against users, one line per system);
//! and the product's targets, checked against the phases that measure them.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;
use serde::Serialize;

use super::stats::{Percentiles, StepResult};
use super::target::System;

/// The phases the targets are read from (see [`super::Plan::Targets`]).
pub const SWEEP: &str = "sweep";
pub const PEAK: &str = "peak";
pub const SCALE: &str = "scale";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: serde_json::Value,
    pub phases: Vec<PhaseResult>,
    pub targets: Vec<Check>,
}

/// One phase: a stub latency and a fleet, and every step of every system measured under them.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub name: String,
    pub stub_latency_ms: u64,
    pub consumers: usize,
    pub concurrency: u16,
    pub adaptive_concurrency: bool,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub system: System,
    #[serde(flatten)]
    pub step: StepResult,
}

/// A target, what was measured for it, and whether it is met (`None`: not measured this run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

impl PhaseResult {
    fn step(&self, system: System, users: usize) -> Option<&StepResult> {
        self.rows
            .iter()
            .find(|row| row.system == system && row.step.users == Some(users))
            .map(|row| &row.step)
    }

    fn steps(&self, system: System) -> impl Iterator<Item = &StepResult> {
        self.rows
            .iter()
            .filter(move |row| row.system == system)
            .map(|row| &row.step)
    }

    /// `1000 ms stub, 2 consumers × 1000`.
    pub fn title(&self) -> String {
        format!(
            "{}: {} ms stub, {} consumer(s) x {} concurrency{}",
            self.name,
            self.stub_latency_ms,
            self.consumers,
            self.concurrency,
            if self.adaptive_concurrency {
                " (adaptive)"
            } else {
                ""
            }
        )
    }
}

impl Report {
    /// The table for the terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for phase in &self.phases {
            out.push_str(&render_phase(phase));
            out.push('\n');
        }
        if !self.targets.is_empty() {
            out.push_str("Targets\n");
            for check in &self.targets {
                let verdict = match check.met {
                    Some(true) => "met    ",
                    Some(false) => "MISSED ",
                    None => "not run",
                };
                out.push_str(&format!(
                    "  {verdict}  {}: {}\n",
                    check.target, check.measured
                ));
            }
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("could not write {}", path.display()))
    }
}

/// The header and rows of one phase.
pub fn render_phase(phase: &PhaseResult) -> String {
    let mut out = format!("{}\n", phase.title());
    out.push_str(&format!(
        "{:<10} {:>12} {:>7} {:>6} {:>8} | {:^47} | {:^47} | {}\n",
        "system",
        "load",
        "letters",
        "errors",
        "letters/s",
        "end to end ms: p50 p90 p95 p99 p99.9 max",
        "overhead ms: p50 p90 p95 p99 p99.9 max",
        "peak RSS MiB / errors"
    ));
    for row in &phase.rows {
        out.push_str(&render_row(row));
        out.push('\n');
    }
    out
}

/// One step's line of the table.
pub fn render_row(row: &Row) -> String {
    let step = &row.step;
    let load = match (step.users, step.rate) {
        (Some(users), _) => format!("{users} users"),
        (None, Some(rate)) => format!("{rate} req/s"),
        (None, None) => "-".to_owned(),
    };
    let rss = step
        .peak_rss_mib
        .iter()
        .map(|(name, mib)| format!("{name} {mib:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut tail = rss;
    if step.tally.error_count() > 0 {
        if !tail.is_empty() {
            tail.push_str("; ");
        }
        tail.push_str(&step.tally.describe_errors());
    }
    let mut line = format!(
        "{:<10} {:>12} {:>7} {:>6} {:>8.1} | {} | {} | {}",
        row.system.name(),
        load,
        step.tally.letters,
        step.tally.error_count(),
        step.throughput_rps,
        percentiles(step.latency_ms.as_ref(), 1),
        percentiles(step.overhead_ms.as_ref(), 2),
        tail
    );
    if !step.cpu_percent.is_empty() {
        let cpu = step
            .cpu_percent
            .iter()
            .map(|(name, percent)| match step.cpu_ms_per_letter.get(name) {
                Some(ms) => format!("{name} {percent:.0}% ({ms:.2} ms)"),
                None => format!("{name} {percent:.0}%"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        line.push_str(&format!("\n{:>30} {cpu}", "CPU of a core (per letter):"));
    }
    line
}

/// Six figures in 47 columns, or dashes.
fn percentiles(figures: Option<&Percentiles>, decimals: usize) -> String {
    match figures {
        Some(p) => [p.p50, p.p90, p.p95, p.p99, p.p999, p.max]
            .iter()
            .map(|value| format!("{value:>7.decimals$}"))
            .collect::<Vec<_>>()
            .join(" "),
        None => format!("{:^47}", "-"),
    }
}

fn find<'a>(phases: &'a [PhaseResult], name: &str) -> Option<&'a PhaseResult> {
    phases.iter().find(|phase| phase.name == name)
}

fn overhead_p99(step: &StepResult) -> Option<f64> {
    step.overhead_ms.as_ref().map(|p| p.p99)
}

fn not_run(target: &str) -> Check {
    Check {
        target: target.to_owned(),
        measured: "not measured in this run".to_owned(),
        met: None,
    }
}

/// Checks every target the run has the phases for.
pub fn checks(phases: &[PhaseResult]) -> Vec<Check> {
    let sweep = find(phases, SWEEP);
    vec![
        overhead_vs_floor(sweep),
        no_errors_at_1000(sweep),
        flat_p95(sweep),
        peak_throughput(find(phases, PEAK)),
        memory(sweep),
        scale_out(phases),
        versus_litellm(sweep),
    ]
}

fn overhead_vs_floor(sweep: Option<&PhaseResult>) -> Check {
    const TARGET: &str = "overhead p99 at 500 users (1 s stub) <= broker floor p99 + 1 ms";
    let pair = sweep.and_then(|phase| {
        let ours = phase.step(System::Letterbox, 500)?;
        let floor = phase.step(System::Broker, 500)?;
        Some((overhead_p99(ours)?, overhead_p99(floor)?, ours, floor))
    });
    let Some((ours, floor, step, floor_step)) = pair else {
        return not_run(TARGET);
    };
    Check {
        target: TARGET.to_owned(),
        measured: format!(
            "{ours:.2} ms vs floor {floor:.2} ms (+{:.2} ms) at {:.0} and {:.0} letters/s",
            ours - floor,
            step.throughput_rps,
            floor_step.throughput_rps
        ),
        met: Some(ours <= floor + 1.0),
    }
}

fn no_errors_at_1000(sweep: Option<&PhaseResult>) -> Check {
    const TARGET: &str = "1,000 users: zero errors";
    let Some(step) = sweep.and_then(|phase| phase.step(System::Letterbox, 1000)) else {
        return not_run(TARGET);
    };
    Check {
        target: TARGET.to_owned(),
        measured: format!(
            "{} letters, {} errors ({})",
            step.tally.letters,
            step.tally.error_count(),
            step.tally.describe_errors()
        ),
        met: Some(step.tally.error_count() == 0 && step.tally.letters > 0),
    }
}

fn flat_p95(sweep: Option<&PhaseResult>) -> Check {
    const TARGET: &str = "p95 end to end at 500 users within 2% of p95 at 1 user (1 s stub)";
    let pair = sweep.and_then(|phase| {
        let one = phase.step(System::Letterbox, 1)?.latency_ms?.p95;
        let many = phase.step(System::Letterbox, 500)?.latency_ms?.p95;
        Some((one, many))
    });
    let Some((one, many)) = pair else {
        return not_run(TARGET);
    };
    let change = (many / one - 1.0) * 100.0;
    Check {
        target: TARGET.to_owned(),
        measured: format!("{many:.1} ms vs {one:.1} ms ({change:+.2}%)"),
        met: Some(many <= one * 1.02),
    }
}

fn peak_throughput(peak: Option<&PhaseResult>) -> Check {
    const TARGET: &str = "0 ms stub: throughput >= half the broker floor's, zero errors";
    let Some(phase) = peak else {
        return not_run(TARGET);
    };
    let best = |system| {
        phase
            .steps(system)
            .filter(|step| step.tally.error_count() == 0)
            .map(|step| step.throughput_rps)
            .fold(None, |best: Option<f64>, rate| {
                Some(best.map_or(rate, |b| b.max(rate)))
            })
    };
    let errors: u64 = phase
        .steps(System::Letterbox)
        .map(|step| step.tally.error_count())
        .sum();
    let (Some(ours), Some(floor)) = (best(System::Letterbox), best(System::Broker)) else {
        return not_run(TARGET);
    };
    Check {
        target: TARGET.to_owned(),
        measured: format!(
            "{ours:.0} letters/s vs floor {floor:.0}/s ({:.0}%), {errors} errors",
            ours / floor * 100.0
        ),
        met: Some(ours * 2.0 >= floor && errors == 0),
    }
}

fn memory(sweep: Option<&PhaseResult>) -> Check {
    const TARGET: &str = "RSS < 64 MB per process with 1,000 jobs in flight";
    let Some(step) = sweep.and_then(|phase| phase.step(System::Letterbox, 1000)) else {
        return not_run(TARGET);
    };
    let limit_mib = 64.0 * 1000.0 * 1000.0 / (1024.0 * 1024.0);
    // Letterbox's own processes; the broker and the bench are watched too, but are not its.
    let ours: Vec<(&String, f64)> = step
        .peak_rss_mib
        .iter()
        .filter(|(name, _)| name.starts_with("producer") || name.starts_with("consumer"))
        .map(|(name, mib)| (name, *mib))
        .collect();
    let largest = ours.iter().map(|(_, mib)| *mib).fold(0.0, f64::max);
    Check {
        target: TARGET.to_owned(),
        measured: ours
            .iter()
            .map(|(name, mib)| format!("{name} {mib:.1} MiB"))
            .collect::<Vec<_>>()
            .join(", "),
        met: Some(!ours.is_empty() && largest < limit_mib),
    }
}

fn scale_out(phases: &[PhaseResult]) -> Check {
    const TARGET: &str =
        "scale-out (50 calls per consumer, 1 s stub): 2 and 4 consumers >= 1.9x and 3.6x one";
    let rate = |consumers: usize| {
        phases
            .iter()
            .find(|phase| phase.name == format!("{SCALE}-{consumers}"))
            .and_then(|phase| phase.steps(System::Letterbox).next())
            .map(|step| (step.throughput_rps, step.tally.error_count()))
    };
    let (Some((one, e1)), Some((two, e2)), Some((four, e4))) = (rate(1), rate(2), rate(4)) else {
        return not_run(TARGET);
    };
    Check {
        target: TARGET.to_owned(),
        measured: format!(
            "{one:.1}, {two:.1}, {four:.1} letters/s: {:.2}x and {:.2}x ({} errors)",
            two / one,
            four / one,
            e1 + e2 + e4
        ),
        met: Some(two >= 1.9 * one && four >= 3.6 * one),
    }
}

fn versus_litellm(sweep: Option<&PhaseResult>) -> Check {
    const TARGET: &str =
        "overhead p99 <= 1/5 of LiteLLM's at the highest load it sustains without errors";
    let Some(phase) = sweep else {
        return not_run(TARGET);
    };
    let sustained = phase
        .steps(System::Litellm)
        .filter(|step| step.tally.error_count() == 0 && step.tally.letters > 0)
        .filter_map(|step| Some((step.users?, overhead_p99(step)?)))
        .max_by_key(|(users, _)| *users);
    let Some((users, theirs)) = sustained else {
        return not_run(TARGET);
    };
    let Some(ours) = phase.step(System::Letterbox, users).and_then(overhead_p99) else {
        return not_run(TARGET);
    };
    Check {
        target: TARGET.to_owned(),
        measured: format!(
            "at {users} users: {ours:.2} ms vs LiteLLM {theirs:.2} ms ({:.1}x less)",
            theirs / ours
        ),
        met: Some(ours * 5.0 <= theirs),
    }
}

/// The colour of a system's lines in every plot.
fn colour(system: System) -> RGBColor {
    match system {
        System::Letterbox => RGBColor(31, 119, 180),
        System::Broker => RGBColor(44, 160, 44),
        System::Direct => RGBColor(127, 127, 127),
        System::Litellm => RGBColor(214, 39, 40),
    }
}

/// Writes [`plot`] of `phase` to `path`.
pub fn write_plot(phase: &PhaseResult, path: &Path) -> anyhow::Result<()> {
    let svg = plot(phase)?;
    std::fs::write(path, svg).with_context(|| format!("could not write {}", path.display()))
}

/// Three panels against users (log scale): end-to-end p50 (dashed) and p99, overhead p99 (log
/// scale), letters per second; as SVG. Only closed-loop steps are plotted.
pub fn plot(phase: &PhaseResult) -> anyhow::Result<String> {
    let mut systems: Vec<System> = Vec::new();
    for row in &phase.rows {
        if !systems.contains(&row.system) {
            systems.push(row.system);
        }
    }
    let points = |system: System, value: &dyn Fn(&StepResult) -> Option<f64>| -> Vec<(f64, f64)> {
        phase
            .steps(system)
            .filter_map(|step| Some((step.users? as f64, value(step)?)))
            .collect()
    };
    let all_users: Vec<f64> = phase
        .rows
        .iter()
        .filter_map(|row| row.step.users.map(|u| u as f64))
        .collect();
    anyhow::ensure!(!all_users.is_empty(), "no closed-loop steps to plot");
    let max_users = all_users.iter().copied().fold(1.0, f64::max).max(2.0);
    let max_of = |value: &dyn Fn(&StepResult) -> Option<f64>| {
        phase
            .rows
            .iter()
            .filter_map(|row| value(&row.step))
            .fold(0.0, f64::max)
    };
    let e2e_p50 = |step: &StepResult| step.latency_ms.map(|p| p.p50);
    let e2e_p99 = |step: &StepResult| step.latency_ms.map(|p| p.p99);
    let ovh_p99 = |step: &StepResult| step.overhead_ms.map(|p| p.p99.max(0.01));
    let throughput = |step: &StepResult| Some(step.throughput_rps);

    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, (1500, 520)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let root = root.titled(&phase.title(), ("sans-serif", 20))?;
        let panels = root.split_evenly((1, 3));
        let x_range = (1.0..max_users * 1.2).log_scale();

        let mut e2e = ChartBuilder::on(&panels[0])
            .caption("end to end, ms (p99; p50 dashed)", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range.clone(), 0.0..max_of(&e2e_p99).max(1.0) * 1.1)?;
        e2e.configure_mesh().x_desc("users").draw()?;
        for &system in &systems {
            let style = colour(system).stroke_width(2);
            e2e.draw_series(LineSeries::new(points(system, &e2e_p99), style))?
                .label(system.name())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
            e2e.draw_series(DashedLineSeries::new(
                points(system, &e2e_p50),
                6,
                4,
                colour(system).stroke_width(1),
            ))?;
        }
        e2e.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;

        let top = max_of(&ovh_p99).max(1.0) * 2.0;
        let mut overhead = ChartBuilder::on(&panels[1])
            .caption("overhead p99, ms (log)", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range.clone(), (0.01..top).log_scale())?;
        overhead.configure_mesh().x_desc("users").draw()?;
        for &system in &systems {
            overhead.draw_series(LineSeries::new(
                points(system, &ovh_p99),
                colour(system).stroke_width(2),
            ))?;
        }

        let mut rate = ChartBuilder::on(&panels[2])
            .caption("throughput, letters/s", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x_range, 0.0..max_of(&throughput).max(1.0) * 1.1)?;
        rate.configure_mesh().x_desc("users").draw()?;
        for &system in &systems {
            rate.draw_series(LineSeries::new(
                points(system, &throughput),
                colour(system).stroke_width(2),
            ))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|error| anyhow::anyhow!("could not draw {}: {error}", phase.name))?;
    drop(root);
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::load::stats::Tally;

    fn percentiles(p50: f64, p95: f64, p99: f64) -> Percentiles {
        Percentiles {
            count: 100,
            p50,
            p90: p95,
            p95,
            p99,
            p999: p99,
            max: p99,
        }
    }

    fn step(users: usize, rps: f64, e2e_p95: f64, overhead_p99: f64, errors: u64) -> StepResult {
        let mut tally = Tally {
            letters: 100,
            ..Tally::default()
        };
        if errors > 0 {
            tally.errors.insert("503 overloaded".to_owned(), errors);
        }
        StepResult {
            users: Some(users),
            rate: None,
            requests: 100 + errors,
            tally,
            throughput_rps: rps,
            latency_ms: Some(percentiles(e2e_p95 - 1.0, e2e_p95, e2e_p95 + 1.0)),
            overhead_ms: Some(percentiles(
                overhead_p99 / 2.0,
                overhead_p99 / 2.0,
                overhead_p99,
            )),
            overhead_reported_ms: None,
            overhead_missing: 0,
            peak_rss_mib: BTreeMap::from([
                ("consumer-1".to_owned(), 30.5),
                ("producer".to_owned(), 40.25),
                ("rabbitmq".to_owned(), 140.0),
            ]),
            cpu_percent: BTreeMap::from([
                ("machine".to_owned(), 150.0),
                ("producer".to_owned(), 20.5),
            ]),
            cpu_ms_per_letter: BTreeMap::from([
                ("machine".to_owned(), 1.579),
                ("producer".to_owned(), 0.216),
            ]),
        }
    }

    fn phase(name: &str, rows: Vec<(System, StepResult)>) -> PhaseResult {
        PhaseResult {
            name: name.to_owned(),
            stub_latency_ms: 1000,
            consumers: 2,
            concurrency: 1000,
            adaptive_concurrency: false,
            rows: rows
                .into_iter()
                .map(|(system, step)| Row { system, step })
                .collect(),
        }
    }

    fn sweep() -> PhaseResult {
        phase(
            SWEEP,
            vec![
                (System::Letterbox, step(1, 1.0, 1004.0, 3.0, 0)),
                (System::Letterbox, step(500, 490.0, 1020.0, 4.5, 0)),
                (System::Letterbox, step(1000, 950.0, 1100.0, 20.0, 2)),
                (System::Broker, step(500, 495.0, 1003.0, 4.0, 0)),
                (System::Litellm, step(1, 1.0, 1010.0, 9.0, 0)),
                (System::Litellm, step(500, 90.0, 5000.0, 4000.0, 0)),
                (System::Litellm, step(1000, 80.0, 9000.0, 8000.0, 7)),
            ],
        )
    }

    #[test]
    fn the_targets_are_read_from_their_phases() {
        let phases = vec![
            sweep(),
            phase(
                PEAK,
                vec![
                    (System::Letterbox, step(100, 700.0, 100.0, 1.0, 0)),
                    (System::Letterbox, step(250, 800.0, 300.0, 1.0, 0)),
                    (System::Broker, step(100, 1500.0, 60.0, 1.0, 0)),
                    (System::Broker, step(250, 1700.0, 150.0, 1.0, 3)),
                ],
            ),
            phase(
                "scale-1",
                vec![(System::Letterbox, step(400, 50.0, 8000.0, 2.0, 0))],
            ),
            phase(
                "scale-2",
                vec![(System::Letterbox, step(400, 96.0, 4000.0, 2.0, 0))],
            ),
            phase(
                "scale-4",
                vec![(System::Letterbox, step(400, 170.0, 2000.0, 2.0, 0))],
            ),
        ];
        let checks = checks(&phases);
        let summary: Vec<(&str, Option<bool>)> = checks
            .iter()
            .map(|check| (check.measured.as_str(), check.met))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "4.50 ms vs floor 4.00 ms (+0.50 ms) at 490 and 495 letters/s",
                    Some(true)
                ),
                ("100 letters, 2 errors (503 overloaded x2)", Some(false)),
                ("1020.0 ms vs 1004.0 ms (+1.59%)", Some(true)),
                // The floor's 250-user step had errors: its best clean rate is 1,500/s.
                ("800 letters/s vs floor 1500/s (53%), 0 errors", Some(true)),
                ("consumer-1 30.5 MiB, producer 40.2 MiB", Some(true)),
                (
                    "50.0, 96.0, 170.0 letters/s: 1.92x and 3.40x (0 errors)",
                    Some(false)
                ),
                // LiteLLM failed at 1,000 users: compared at 500.
                (
                    "at 500 users: 4.50 ms vs LiteLLM 4000.00 ms (888.9x less)",
                    Some(true)
                ),
            ]
        );
    }

    #[test]
    fn targets_without_their_phase_are_not_run() {
        let checks = checks(&[]);
        assert_eq!(checks.len(), 7);
        assert!(checks.iter().all(|check| check.met.is_none()));
    }

    #[test]
    fn a_row_shows_load_counts_percentiles_memory_and_errors() {
        let row = Row {
            system: System::Letterbox,
            step: step(1000, 950.0, 1100.0, 20.0, 2),
        };
        assert_eq!(
            render_row(&row),
            "letterbox    1000 users     100      2    950.0 |  1099.0  1100.0  1100.0  1101.0  1101.0  1101.0 |   10.00   10.00   10.00   20.00   20.00   20.00 | consumer-1 30.5, producer 40.2, rabbitmq 140.0; 503 overloaded x2\n   CPU of a core (per letter): machine 150% (1.58 ms), producer 20% (0.22 ms)"
        );
    }

    #[test]
    fn a_phase_is_plotted_as_svg() {
        let svg = plot(&sweep()).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("letterbox"));
        assert!(svg.contains("litellm"));
    }
}
