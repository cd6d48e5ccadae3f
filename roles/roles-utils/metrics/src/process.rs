//! The standard `process_*` metrics (CPU, memory, file descriptors, start time), read from
//! `/proc/self` at scrape time. Linux only: elsewhere the collector reports nothing.

use std::collections::HashMap;

use prometheus::{
    core::{Collector, Desc},
    proto::{self, MetricFamily, MetricType},
};

const METRICS: [(&str, &str); 6] = [
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
    ),
    ("process_open_fds", "Number of open file descriptors."),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
    ),
];

pub(crate) struct ProcessCollector {
    descs: Vec<Desc>,
}

impl ProcessCollector {
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let descs = METRICS
            .iter()
            .map(|(name, help)| {
                Desc::new((*name).into(), (*help).into(), Vec::new(), HashMap::new())
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { descs })
    }
}

/// One figure of the process, as read now.
#[derive(Debug, Default, PartialEq)]
struct Reading {
    cpu_seconds: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    start_time_seconds: Option<f64>,
}

fn family(desc: &Desc, kind: MetricType, value: f64) -> MetricFamily {
    let mut m = proto::Metric::default();
    if kind == MetricType::COUNTER {
        let mut c = proto::Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = proto::Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    let mut f = MetricFamily::default();
    f.set_name(desc.fq_name.clone());
    f.set_help(desc.help.clone());
    f.set_field_type(kind);
    f.set_metric(vec![m].into());
    f
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let r = read();
        let values = [
            (MetricType::COUNTER, r.cpu_seconds),
            (MetricType::GAUGE, r.open_fds),
            (MetricType::GAUGE, r.max_fds),
            (MetricType::GAUGE, r.resident_bytes),
            (MetricType::GAUGE, r.virtual_bytes),
            (MetricType::GAUGE, r.start_time_seconds),
        ];
        self.descs
            .iter()
            .zip(values)
            .filter_map(|(desc, (kind, value))| value.map(|v| family(desc, kind, v)))
            .collect()
    }
}

#[cfg(target_os = "linux")]
fn read() -> Reading {
    use std::fs;
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let mut r = Reading {
        open_fds: fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as f64),
        max_fds: fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| max_open_files(&l)),
        ..Reading::default()
    };
    let boot = fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s));
    if let Ok(stat) = fs::read_to_string("/proc/self/stat") {
        if ticks > 0 && page > 0 {
            let from_stat = from_stat(&stat, ticks as f64, page as f64, boot);
            r.cpu_seconds = from_stat.cpu_seconds;
            r.resident_bytes = from_stat.resident_bytes;
            r.virtual_bytes = from_stat.virtual_bytes;
            r.start_time_seconds = from_stat.start_time_seconds;
        }
    }
    r
}

#[cfg(not(target_os = "linux"))]
fn read() -> Reading {
    Reading::default()
}

/// CPU, memory and start time from `/proc/self/stat`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn from_stat(stat: &str, ticks: f64, page: f64, boot: Option<f64>) -> Reading {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return Reading::default();
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n of proc(5) is fields[n - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    Reading {
        cpu_seconds: field(14)
            .zip(field(15))
            .map(|(user, system)| (user + system) / ticks),
        virtual_bytes: field(23),
        resident_bytes: field(24).map(|pages| pages * page),
        start_time_seconds: boot
            .zip(field(22))
            .map(|(boot, start)| boot + start / ticks),
        ..Reading::default()
    }
}

/// `btime` of `/proc/stat`: boot time, unix seconds.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn max_open_files(limits: &str) -> Option<f64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 \
                    8 0 1000 104857600 2560 18446744073709551615";
        let r = from_stat(stat, 100.0, 4096.0, Some(1_700_000_000.0));
        assert_eq!(r.cpu_seconds, Some(3.0));
        assert_eq!(r.virtual_bytes, Some(104_857_600.0));
        assert_eq!(r.resident_bytes, Some(2560.0 * 4096.0));
        assert_eq!(r.start_time_seconds, Some(1_700_000_010.0));
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\n"), Some(1.7e9));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(
            from_stat("garbage", 100.0, 4096.0, None),
            Reading::default()
        );
    }
}
