//! Memory of the processes under test: the resident set size from `/proc/PID/status`, sampled
//! during a step, keeping the peak. A process that spawns workers (LiteLLM's proxy) is measured
//! with its descendants.

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

/// A process to watch: its name in the report, its pid, and whether to count its descendants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
    pub with_children: bool,
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
            let kib = if process.with_children {
                tree_rss_kib(process.pid)
            } else {
                rss_kib(process.pid)
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
    fn this_process_has_a_resident_set() {
        let kib = rss_kib(std::process::id()).unwrap();
        assert!(kib > 0);
        assert!(tree_rss_kib(std::process::id()).unwrap() >= kib);
    }
}
