//! Memory and CPU of the processes under test. The resident set size comes from
//! `/proc/PID/status`, sampled during a step, keeping the peak; CPU time from `/proc/PID/stat`
//! (and the machine's from `/proc/stat`), read when the measured window opens and closes. A
//! process that spawns workers (LiteLLM's proxy) is measured with its descendants.
//!
//! The box is shared: the machine's busy time beside the processes' own tells whether anything
//! else was running during a step.

use std::collections::BTreeMap;

/// `VmRSS` of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|number| number.trim().parse().ok())
}

/// The resident set size of `pid` now, in KiB; `None` when it is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_vm_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The resident set size of `pid` and all its descendants, in KiB.
pub fn tree_rss_kib(pid: u32) -> Option<u64> {
    let mut total = rss_kib(pid)?;
    let mut pending = children(pid);
    while let Some(child) = pending.pop() {
        total += rss_kib(child).unwrap_or(0);
        pending.extend(children(child));
    }
    Some(total)
}

/// The children of every thread of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on Linux whatever the kernel's
/// own timer frequency).
const TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU time of a `/proc/PID/stat` text, in clock ticks.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces: count fields after the last `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of `pid` (all its threads) so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of `pid` and its descendants now alive, in clock ticks.
pub fn tree_cpu_ticks(pid: u32) -> Option<u64> {
    let mut total = cpu_ticks(pid)?;
    let mut pending = children(pid);
    while let Some(child) = pending.pop() {
        total += cpu_ticks(child).unwrap_or(0);
        pending.extend(children(child));
    }
    Some(total)
}

/// The machine's busy and total CPU time, all cores, from the `cpu` line of `/proc/stat`.
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|value| value.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let at = |index: usize| values.get(index).copied().unwrap_or(0);
    let idle = at(3) + at(4);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Some((busy, busy + idle))
}

/// CPU times of the watched processes and of the machine at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSnapshot {
    pub processes: BTreeMap<String, u64>,
    /// Busy and total ticks of all cores.
    pub machine: (u64, u64),
}

impl CpuSnapshot {
    pub fn take(watched: &[Watched]) -> Self {
        let processes = watched
            .iter()
            .filter_map(|process| {
                let ticks = match &process.scope {
                    Scope::Process => cpu_ticks(process.pid),
                    Scope::Tree => tree_cpu_ticks(process.pid),
                    Scope::Threads(name) => thread_cpu_ticks(process.pid, name),
                }?;
                Some((process.name.clone(), ticks))
            })
            .collect();
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| parse_machine_ticks(&stat))
            .unwrap_or((0, 0));
        Self { processes, machine }
    }

    /// Each process's CPU use between `self` and `later`, over `seconds` of wall time, in
    /// percent of one core; `machine` is all cores' busy share times the number of cores (so it
    /// is comparable: 200% is two cores saturated).
    pub fn usage(&self, later: &Self, seconds: f64) -> BTreeMap<String, f64> {
        let mut usage = BTreeMap::new();
        if seconds <= 0.0 {
            return usage;
        }
        for (name, before) in &self.processes {
            if let Some(after) = later.processes.get(name) {
                let spent = after.saturating_sub(*before) as f64 / TICKS_PER_SECOND;
                usage.insert(name.clone(), round1(spent / seconds * 100.0));
            }
        }
        let busy = later.machine.0.saturating_sub(self.machine.0) as f64;
        let total = later.machine.1.saturating_sub(self.machine.1) as f64;
        if total > 0.0 {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            usage.insert("machine".to_owned(), round1(busy / total * cores * 100.0));
        }
        usage
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// A process to watch: its name in the report, its pid, and what of it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Process,
    /// With its descendants (a server that forks workers).
    Tree,
    /// The CPU time of its threads of this name only (the stub's runtime inside the bench); no
    /// memory figure, which is the whole process's.
    Threads(String),
}

/// CPU time of the threads of `pid` named `name`, in clock ticks.
pub fn thread_cpu_ticks(pid: u32, name: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let wanted = format!("({name})");
    Some(
        tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
            .filter(|stat| stat.contains(&wanted))
            .filter_map(|stat| parse_cpu_ticks(&stat))
            .sum(),
    )
}

/// The highest resident set size seen per process, in KiB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeakRss {
    pub peaks: BTreeMap<String, u64>,
}

impl PeakRss {
    pub fn observe(&mut self, name: &str, kib: u64) {
        let peak = self.peaks.entry(name.to_owned()).or_default();
        *peak = (*peak).max(kib);
    }

    /// Takes one sample of every watched process that is still there.
    pub fn sample(&mut self, watched: &[Watched]) {
        for process in watched {
            let kib = match process.scope {
                Scope::Process => rss_kib(process.pid),
                Scope::Tree => tree_rss_kib(process.pid),
                Scope::Threads(_) => None,
            };
            if let Some(kib) = kib {
                self.observe(&process.name, kib);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_the_status_file() {
        let status = "Name:\tletterbox-produ\nVmPeak:\t  812340 kB\nVmRSS:\t   23456 kB\nRssAnon:\t   10000 kB\n";
        assert_eq!(parse_vm_rss_kib(status), Some(23_456));
        // Kernel threads have no VmRSS line.
        assert_eq!(
            parse_vm_rss_kib("Name:\tkthreadd\nState:\tS (sleeping)\n"),
            None
        );
    }

    #[test]
    fn the_peak_of_the_samples_is_kept_per_process() {
        let mut peak = PeakRss::default();
        for (name, kib) in [
            ("producer", 100),
            ("consumer-1", 80),
            ("producer", 140),
            ("producer", 120),
        ] {
            peak.observe(name, kib);
        }
        assert_eq!(
            peak.peaks,
            BTreeMap::from([("consumer-1".to_owned(), 80), ("producer".to_owned(), 140)])
        );
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "4146 (a (b) c) R 4141 4141 6628 0 -1 4194304 122 0 0 0 250 37 0 0 20 0 1";
        assert_eq!(parse_cpu_ticks(stat), Some(287));
        assert_eq!(parse_cpu_ticks("4146 (cat) R 1"), None);
        let machine = "cpu  387986 0 22868 60388 4623 0 612 1995 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(
            parse_machine_ticks(machine),
            Some((
                387_986 + 22_868 + 612 + 1995,
                387_986 + 22_868 + 612 + 1995 + 60_388 + 4623
            ))
        );
    }

    #[test]
    fn cpu_use_is_a_share_of_one_core_per_process() {
        let before = CpuSnapshot {
            processes: BTreeMap::from([("producer".to_owned(), 100), ("gone".to_owned(), 5)]),
            machine: (0, 0),
        };
        let after = CpuSnapshot {
            processes: BTreeMap::from([("producer".to_owned(), 250)]),
            machine: (0, 0),
        };
        // 150 ticks (1.5 s of CPU) in 2 s of wall time.
        assert_eq!(
            before.usage(&after, 2.0),
            BTreeMap::from([("producer".to_owned(), 75.0)])
        );
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let kib = rss_kib(std::process::id()).unwrap();
        assert!(kib > 0);
        assert!(tree_rss_kib(std::process::id()).unwrap() >= kib);
    }
}
