//! Host samplers: system memory and per-process RSS (sysinfo), the process listening on a local port
//! (Linux `/proc`), NVIDIA GPUs through NVML ("no GPU" when the library or a device is absent, never an
//! error), and temperatures from Linux hwmon / thermal zones.
//!
//! macOS: memory and RSS work through sysinfo; temperatures (IOReport/SMC) are not read and the port →
//! process lookup returns nothing. That path compiles behind `cfg(target_os = "macos")` and is untested here.

use serde::{Deserialize, Serialize};
use std::path::Path;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind, System};

/// Process names that are inference servers, for RSS when no endpoint port maps to a process.
const INFERENCE_PROCESSES: &[&str] = &["llama-server", "ollama", "hearth", "vllm"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub used_bytes: u64,
    pub total_bytes: u64,
    pub processes: Vec<ProcessMemory>,
}

impl Memory {
    pub fn used_fraction(&self) -> f64 {
        if self.total_bytes == 0 { 0.0 } else { self.used_bytes as f64 / self.total_bytes as f64 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessMemory {
    pub pid: u32,
    pub name: String,
    pub rss_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub name: String,
    pub utilization_percent: Option<u32>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub power_watts: Option<f64>,
    pub temperature_c: Option<u32>,
}

/// GPUs found, or why none are shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GpuStatus {
    Gpus(Vec<Gpu>),
    NoGpu(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    pub label: String,
    pub celsius: f64,
}

/// Keeps sysinfo and NVML state between samples (both are costly to set up).
pub struct SystemSampler {
    /// None where sysinfo cannot read this platform: memory then reads as unknown (zeros).
    system: Option<System>,
    nvml: Result<nvml_wrapper::Nvml, String>,
}

impl Default for SystemSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemSampler {
    pub fn new() -> Self {
        let system = System::new_with_specifics(RefreshKind::nothing()).map_err(|e| tracing::warn!("system memory unavailable: {e}")).ok();
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("no GPU (NVML: {e})"));
        SystemSampler { system, nvml }
    }

    /// Memory and RSS only: NVML is never loaded (the proxy samples one process).
    pub fn memory_only() -> Self {
        let system = System::new_with_specifics(RefreshKind::nothing()).ok();
        SystemSampler { system, nvml: Err("no GPU (not sampled)".into()) }
    }

    /// System memory and the RSS of `pids` (the servers behind endpoints) plus known inference processes.
    pub fn memory(&mut self, pids: &[u32]) -> Memory {
        let Some(system) = &mut self.system else { return Memory::default() };
        system.refresh_memory();
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing().with_memory());
        let mut processes: Vec<ProcessMemory> = system
            .processes()
            .iter()
            // Linux lists threads as processes too; a thread's RSS is its process's.
            .filter(|(_, p)| p.thread_kind().is_none())
            .filter(|(pid, p)| pids.contains(&pid.as_u32()) || is_inference_process(&p.name().to_string_lossy()))
            .map(|(pid, p)| ProcessMemory { pid: pid.as_u32(), name: p.name().to_string_lossy().into_owned(), rss_bytes: p.memory() })
            .collect();
        processes.sort_by_key(|p| std::cmp::Reverse(p.rss_bytes));
        // available_memory counts reclaimable cache as free, as `free` and Activity Monitor do.
        let total = system.total_memory();
        Memory { used_bytes: total.saturating_sub(system.available_memory()), total_bytes: total, processes }
    }

    /// RSS of one process, refreshed now.
    pub fn rss(&mut self, pid: u32) -> Option<u64> {
        let pid = Pid::from_u32(pid);
        let system = self.system.as_mut()?;
        system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, ProcessRefreshKind::nothing().with_memory());
        system.process(pid).map(|p| p.memory())
    }

    pub fn gpus(&self) -> GpuStatus {
        let nvml = match &self.nvml {
            Ok(n) => n,
            Err(why) => return GpuStatus::NoGpu(why.clone()),
        };
        let count = match nvml.device_count() {
            Ok(0) => return GpuStatus::NoGpu("no GPU (NVML found no device)".into()),
            Ok(n) => n,
            Err(e) => return GpuStatus::NoGpu(format!("no GPU (NVML: {e})")),
        };
        GpuStatus::Gpus((0..count).filter_map(|i| nvml.device_by_index(i).ok()).map(|d| read_gpu(&d)).collect())
    }
}

fn read_gpu(d: &nvml_wrapper::Device<'_>) -> Gpu {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    let memory = d.memory_info().ok();
    Gpu {
        name: d.name().unwrap_or_else(|_| "GPU".into()),
        utilization_percent: d.utilization_rates().ok().map(|u| u.gpu),
        memory_used_bytes: memory.as_ref().map(|m| m.used),
        memory_total_bytes: memory.as_ref().map(|m| m.total),
        power_watts: d.power_usage().ok().map(|mw| mw as f64 / 1000.0),
        temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
    }
}

fn is_inference_process(name: &str) -> bool {
    INFERENCE_PROCESSES.iter().any(|n| name == *n || name.starts_with(&format!("{n}-")))
}

/// Temperatures from `/sys/class/hwmon/*/temp*_input` (labelled by chip and sensor), or, when there are
/// none, from `/sys/class/thermal/thermal_zone*`.
pub fn temperatures() -> Vec<Temperature> {
    #[cfg(target_os = "linux")]
    {
        let hwmon = hwmon_temperatures(Path::new("/sys/class/hwmon"));
        if !hwmon.is_empty() {
            return hwmon;
        }
        thermal_zone_temperatures(Path::new("/sys/class/thermal"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        // macOS (IOReport/SMC) is not read yet; documented as untested.
        Vec::new()
    }
}

/// hwmon sensors under `root` (a parameter so tests can point at a fake sysfs).
pub fn hwmon_temperatures(root: &Path) -> Vec<Temperature> {
    let mut out = Vec::new();
    for chip in sorted_entries(root) {
        let chip_name = read_trimmed(&chip.join("name")).unwrap_or_else(|| file_name(&chip));
        for input in sorted_entries(&chip).into_iter().filter(|p| is_temp_input(p)) {
            let Some(celsius) = read_millidegrees(&input) else { continue };
            let label_path = input.with_file_name(file_name(&input).replace("_input", "_label"));
            let sensor = read_trimmed(&label_path).unwrap_or_else(|| file_name(&input).replace("_input", ""));
            out.push(Temperature { label: format!("{chip_name} {sensor}"), celsius });
        }
    }
    out
}

pub fn thermal_zone_temperatures(root: &Path) -> Vec<Temperature> {
    sorted_entries(root)
        .into_iter()
        .filter(|p| file_name(p).starts_with("thermal_zone"))
        .filter_map(|zone| {
            let celsius = read_millidegrees(&zone.join("temp"))?;
            let label = read_trimmed(&zone.join("type")).unwrap_or_else(|| file_name(&zone));
            Some(Temperature { label, celsius })
        })
        .collect()
}

fn is_temp_input(p: &Path) -> bool {
    let name = file_name(p);
    name.starts_with("temp") && name.ends_with("_input")
}

fn read_millidegrees(p: &Path) -> Option<f64> {
    read_trimmed(p)?.parse::<f64>().ok().map(|m| m / 1000.0).filter(|c| (-50.0..200.0).contains(c))
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn sorted_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.sort();
    v
}

/// The pid of the local process listening on TCP `port` (Linux: `/proc/net/tcp{,6}` socket inode →
/// `/proc/PID/fd`). None elsewhere, for remote hosts, or without permission.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|text| listening_inodes(&text, port))
            .collect();
        if inodes.is_empty() {
            return None;
        }
        let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
        sorted_entries(Path::new("/proc")).into_iter().find_map(|proc_dir| {
            let pid: u32 = file_name(&proc_dir).parse().ok()?;
            let fds = std::fs::read_dir(proc_dir.join("fd")).ok()?;
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .any(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
                .then_some(pid)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = port;
        None
    }
}

/// Socket inodes in LISTEN state (0A) on `port` from the text of `/proc/net/tcp`.
pub fn listening_inodes(proc_net_tcp: &str, port: u16) -> Vec<String> {
    let port_hex = format!("{port:04X}");
    proc_net_tcp
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols.get(1)?.rsplit(':').next()?;
            (local_port == port_hex && *cols.get(3)? == "0A").then(|| cols.get(9).map(|s| s.to_string()))?
        })
        .collect()
}

/// The port of a local endpoint URL (`127.0.0.1`, `localhost`, `[::1]`, `0.0.0.0`); None for remote hosts.
pub fn local_port(url: &str) -> Option<u16> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1" | "0.0.0.0");
    local.then(|| parsed.port_or_known_default()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwmon_and_thermal_zones_from_a_fake_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let chip = dir.path().join("hwmon/hwmon0");
        std::fs::create_dir_all(&chip).unwrap();
        std::fs::write(chip.join("name"), "k10temp\n").unwrap();
        std::fs::write(chip.join("temp1_input"), "54125\n").unwrap();
        std::fs::write(chip.join("temp1_label"), "Tctl\n").unwrap();
        std::fs::write(chip.join("temp2_input"), "garbage\n").unwrap();
        let t = hwmon_temperatures(&dir.path().join("hwmon"));
        assert_eq!(t, vec![Temperature { label: "k10temp Tctl".into(), celsius: 54.125 }]);
        let zone = dir.path().join("thermal/thermal_zone0");
        std::fs::create_dir_all(&zone).unwrap();
        std::fs::write(zone.join("temp"), "40000").unwrap();
        std::fs::write(zone.join("type"), "x86_pkg_temp").unwrap();
        assert_eq!(thermal_zone_temperatures(&dir.path().join("thermal"))[0].celsius, 40.0);
        assert!(hwmon_temperatures(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn listening_inode_of_a_port() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0\n\
   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0\n";
        assert_eq!(listening_inodes(text, 8080), vec!["12345".to_string()]);
        assert!(listening_inodes(text, 8081).is_empty());
    }

    #[test]
    fn a_real_listener_maps_to_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if cfg!(target_os = "linux") {
            assert_eq!(pid_listening_on(port), Some(std::process::id()));
        }
        assert_eq!(local_port(&format!("http://127.0.0.1:{port}/v1")), Some(port));
        assert_eq!(local_port("http://example.com:80"), None);
    }

    #[test]
    fn memory_and_gpu_never_fail() {
        let mut s = SystemSampler::new();
        let m = s.memory(&[std::process::id()]);
        assert!(m.total_bytes > 0 && m.used_bytes <= m.total_bytes);
        assert!(m.processes.iter().any(|p| p.pid == std::process::id() && p.rss_bytes > 0));
        // Threads (this test harness runs several) are not listed as processes of their own.
        // Even when asked for by id, a thread is not listed as a process of its own.
        let _extra = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(300)));
        let me = std::process::id();
        let tids: Vec<u32> = std::fs::read_dir("/proc/self/task").map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|&t| t != me).collect()).unwrap_or_default();
        let m = s.memory(&[&[me][..], &tids].concat());
        assert!(m.processes.iter().all(|p| !tids.contains(&p.pid)), "threads listed: {:?}", m.processes);
        // Either GPUs with names or a reason; both are fine, neither panics.
        match s.gpus() {
            GpuStatus::Gpus(g) => assert!(g.iter().all(|g| !g.name.is_empty())),
            GpuStatus::NoGpu(why) => assert!(why.contains("no GPU")),
        }
    }
}
