//! Prints what the host samplers read here (GPUs through NVML, memory, temperatures) as JSON: a quick check
//! of the NVML path on a machine with an NVIDIA GPU. Run: `cargo run -p hearth-monitor --example gpu_probe`.

use hearth_monitor::system::{temperatures, SystemSampler};

fn main() {
    let mut sampler = SystemSampler::new();
    let report = serde_json::json!({
        "gpus": sampler.gpus(),
        "memory": sampler.memory(&[std::process::id()]),
        "temperatures": temperatures(),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
}
