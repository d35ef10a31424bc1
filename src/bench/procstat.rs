//! CPU time and memory of a process and its descendants, from /proc: what
//! the benchmark charges to the system under test (a relay, the switch,
//! Kamailio's worker processes).

use std::fs;
use std::io;

/// `/proc/<pid>/stat` counts CPU time in clock ticks of USER_HZ, which
/// the kernel fixes at 100 for user space on every architecture Linux
/// supports today (whatever CONFIG_HZ is).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU seconds, summed over the processes.
    pub cpu_s: f64,
    /// Resident set (VmRSS), KiB, summed.
    pub rss_kib: u64,
    /// Proportional set (Pss of smaps_rollup, shared pages divided among
    /// their users), KiB, summed: what a tree of processes sharing memory
    /// (Kamailio's) really holds.
    pub pss_kib: u64,
    /// Processes in the tree.
    pub processes: usize,
}

impl ProcSample {
    /// The memory figure to compare: RSS for one process, PSS for a tree.
    pub fn mem_kib(&self) -> u64 {
        if self.processes > 1 {
            self.pss_kib
        } else {
            self.rss_kib
        }
    }
}

/// (ppid, utime + stime in ticks) from a `/proc/<pid>/stat` line.
fn parse_stat(line: &str) -> Option<(u32, u64)> {
    // The command name is in parentheses and may hold spaces or ')'.
    let rest = line.get(line.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15).
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// The value in kB of the `key:` line of a /proc status-like file.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// `root` and every process descending from it.
pub fn tree(root: u32) -> io::Result<Vec<u32>> {
    let mut parent = Vec::new();
    for e in fs::read_dir("/proc")? {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Processes come and go while we read: skip what vanished.
        if let Some((ppid, _)) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        {
            parent.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        out.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    Ok(out)
}

/// CPU and memory of `root` and its descendants.
pub fn sample_tree(root: u32) -> io::Result<ProcSample> {
    let mut s = ProcSample::default();
    for pid in tree(root)? {
        let Some((_, ticks)) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        else {
            continue;
        };
        s.cpu_s += ticks as f64 / TICKS_PER_SECOND;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.rss_kib += kib_field(&status, "VmRSS:").unwrap_or(0);
        let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        s.pss_kib += kib_field(&rollup, "Pss:").unwrap_or(0);
        s.processes += 1;
    }
    if s.processes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {root} is gone"),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_and_samples_itself() {
        let line = "42 (a b) c) S 7 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 3 0";
        assert_eq!(parse_stat(line), Some((7, 281)));
        assert_eq!(
            kib_field("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"),
            Some(1234)
        );
        let me = sample_tree(std::process::id()).unwrap();
        assert!(me.processes >= 1 && me.rss_kib > 0, "{me:?}");
    }
}
