//! Peak memory of the server behind `hearth proxy`. Its process is found from the upstream's port (Linux
//! `/proc`, as the monitor finds the servers it watches) and its RSS is sampled every
//! [`SAMPLE_EVERY`] while any session is open, off the proxied byte path; each session keeps the highest
//! value seen, plus one last reading when it ends. A remote upstream, or one whose process cannot be
//! found, gives no peak: the session records NULL, shown as unknown.

use crate::system::{local_port, pid_listening_on, SystemSampler};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Scanning `/proc` for the listener costs far more than a reading: not more often than this.
const LOOKUP_EVERY: Duration = Duration::from_secs(2);

/// The upstream process and the sessions open on it.
pub struct PeakWatch {
    port: Option<u16>,
    process: Mutex<Process>,
    /// Peaks of open sessions (0 = nothing read yet); `None` while no sampling task runs.
    open: Mutex<Option<Vec<Arc<AtomicU64>>>>,
}

struct Process {
    sampler: SystemSampler,
    pid: Option<u32>,
    next_lookup: Instant,
}

/// One open session's peak.
pub struct PeakSpan(Arc<AtomicU64>);

impl PeakWatch {
    /// Watches the process listening on `upstream`'s port, when that is a local URL.
    pub fn new(upstream: &str) -> Arc<PeakWatch> {
        let process = Process { sampler: SystemSampler::memory_only(), pid: None, next_lookup: Instant::now() };
        Arc::new(PeakWatch { port: local_port(upstream), process: Mutex::new(process), open: Mutex::new(None) })
    }

    /// The upstream's pid, looked up now if not known yet.
    pub fn pid(&self) -> Option<u32> {
        let mut p = self.process.lock().ok()?;
        self.find(&mut p)
    }

    fn find(&self, p: &mut Process) -> Option<u32> {
        let now = Instant::now();
        if p.pid.is_none() && now >= p.next_lookup {
            p.next_lookup = now + LOOKUP_EVERY;
            p.pid = self.port.and_then(pid_listening_on);
        }
        p.pid
    }

    /// The upstream's RSS now; a process that is gone is looked up again (the server may have restarted).
    fn rss(&self) -> Option<u64> {
        let mut p = self.process.lock().ok()?;
        let pid = self.find(&mut p)?;
        let rss = p.sampler.rss(pid);
        if rss.is_none() {
            p.pid = None;
        }
        rss
    }

    /// Opens a session; a sampling task runs on the current tokio runtime while any session is open.
    pub fn open(self: &Arc<Self>) -> PeakSpan {
        let span = Arc::new(AtomicU64::new(0));
        let Ok(mut open) = self.open.lock() else { return PeakSpan(span) };
        let start_task = open.is_none();
        open.get_or_insert_with(Vec::new).push(span.clone());
        drop(open);
        if start_task && self.port.is_some() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(sample_while_open(Arc::downgrade(self)));
            }
        }
        PeakSpan(span)
    }

    /// Closes a session after one last reading: its peak RSS, None when the process is unknown.
    pub fn close(&self, span: PeakSpan) -> Option<u64> {
        if let Some(rss) = self.rss() {
            span.0.fetch_max(rss, Ordering::Relaxed);
        }
        if let Ok(mut open) = self.open.lock() {
            if let Some(list) = open.as_mut() {
                list.retain(|s| !Arc::ptr_eq(s, &span.0));
            }
        }
        Some(span.0.load(Ordering::Relaxed)).filter(|&b| b > 0)
    }

    /// One reading folded into every open session; false once none is open (the task then ends).
    fn sample_open(&self) -> bool {
        let rss = self.rss();
        let Ok(mut open) = self.open.lock() else { return false };
        match open.as_ref() {
            Some(list) if !list.is_empty() => {
                for span in list {
                    span.fetch_max(rss.unwrap_or(0), Ordering::Relaxed);
                }
                true
            }
            // Decided under the lock, so a session opened just now starts a task of its own.
            _ => {
                *open = None;
                false
            }
        }
    }
}

async fn sample_while_open(watch: Weak<PeakWatch>) {
    loop {
        let Some(w) = watch.upgrade() else { return };
        // Reading /proc blocks (and a lookup scans every process): not on the proxy's own threads.
        let more = tokio::task::spawn_blocking(move || w.sample_open()).await.unwrap_or(false);
        if !more {
            return;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_listener_has_a_peak_and_a_remote_one_has_none() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let watch = PeakWatch::new(&format!("http://127.0.0.1:{port}"));
        if cfg!(target_os = "linux") {
            assert_eq!(watch.pid(), Some(std::process::id()));
            let span = watch.open();
            // Memory the process holds for a while during the session counts towards its peak even when
            // it is given back before the session ends (the sampling task saw it).
            let before = watch.rss().unwrap();
            let ballast = std::hint::black_box(vec![1u8; 64 << 20]);
            tokio::time::sleep(SAMPLE_EVERY * 4).await;
            drop(ballast);
            let peak = watch.close(span).unwrap();
            assert!(peak >= before + (48 << 20), "peak {peak} vs {before} before 64 MiB more");
        }
        let remote = PeakWatch::new("http://example.com:11434");
        assert_eq!(remote.pid(), None);
        let span = remote.open();
        assert_eq!(remote.close(span), None);
    }
}
