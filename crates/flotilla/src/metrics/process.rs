//! Process metrics read from `/proc/self` at scrape time, and the runtime's live task count.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Process CPU, memory and file descriptors, read from `/proc/self` at scrape time
/// (Linux only; elsewhere the metrics are simply absent). prometheus-client has no process
/// collector, and this is a handful of reads, so it is written here rather than adding a crate.
#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = proc_stat() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stat.cpu_seconds);
        let e = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(e)?;
        let rss = ConstGauge::new(stat.rss_bytes);
        let e = encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            None,
            rss.metric_type(),
        )?;
        rss.encode(e)?;
        let vsz = ConstGauge::new(stat.virtual_bytes);
        let e = encoder.encode_descriptor(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            None,
            vsz.metric_type(),
        )?;
        vsz.encode(e)?;
        if let Some(fds) = open_fds() {
            let g = ConstGauge::new(fds);
            let e = encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                g.metric_type(),
            )?;
            g.encode(e)?;
        }
        // Scrapes run on the service's runtime; a task count that only grows is a leak the
        // soak test (bench/soak) watches for.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = i64::try_from(runtime.metrics().num_alive_tasks()).unwrap_or(i64::MAX);
            let g = ConstGauge::new(tasks);
            let e = encoder.encode_descriptor(
                "tokio_alive_tasks",
                "Tasks alive on the process's Tokio runtime.",
                None,
                g.metric_type(),
            )?;
            g.encode(e)?;
        }
        Ok(())
    }
}

struct ProcStat {
    cpu_seconds: f64,
    rss_bytes: i64,
    virtual_bytes: i64,
}

fn proc_stat() -> Option<ProcStat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; fields are counted after its ')'.
    let after = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<i64>().ok());
    // After ')': state is index 0, so utime (field 14) is 11, stime 12, vsize 20, rss 21.
    let ticks = 100.0; // USER_HZ is 100 on every Linux architecture Rust targets.
    let page = 4096;
    Some(ProcStat {
        cpu_seconds: (num(11)? + num(12)?) as f64 / ticks,
        virtual_bytes: num(20)?,
        rss_bytes: num(21)? * page,
    })
}

fn open_fds() -> Option<i64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as i64)
}
