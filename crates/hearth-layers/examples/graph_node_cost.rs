//! What a recorded decode graph pays per kernel, depending on what recording puts between kernels.
//! A decode step records each buffer it allocates and frees as a memory node in line between two
//! kernels; this replays chains of one tiny kernel (hearth's K/V write of one row, in place) with
//! nothing, an allocation, or an allocation and a free between consecutive kernels, and prints the
//! microseconds per kernel of each. A benchmark (numbers, no assertions); needs a CUDA GPU:
//!   cargo run --release --features cuda --example graph_node_cost [KERNELS] [REPLAYS]

use candle_core::{DType, Device, Tensor};
use hearth_layers::device::{self, DeviceSpec};
use std::time::Instant;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// What sits between two kernels of a chain.
#[derive(Clone, Copy, Debug)]
enum Between {
    Nothing,
    Allocation,
    AllocationAndFree,
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let kernels = args.next().transpose()?.unwrap_or(200);
    let replays = args.next().transpose()?.unwrap_or(200);
    let dev = device::select_device(DeviceSpec::Cuda(0))?;
    let Device::Cuda(cuda) = &dev else { return Err("no CUDA device".into()) };
    let width = 512;
    let (k_cache, v_cache) = (Tensor::zeros((1024, width), DType::F16, &dev)?, Tensor::zeros((1024, width), DType::F16, &dev)?);
    let (k, v) = (Tensor::randn(0f32, 1., (1, width), &dev)?, Tensor::randn(0f32, 1., (1, width), &dev)?);
    let slots = Tensor::new(&[3u32], &dev)?;
    println!("{kernels} kernels a graph, {replays} replays; microseconds per kernel (replay time / kernels)");
    for between in [Between::Nothing, Between::Allocation, Between::AllocationAndFree] {
        let chain = || -> Res<()> {
            let mut held = Vec::new();
            for _ in 0..kernels {
                if !matches!(between, Between::Nothing) {
                    // SAFETY: never read; only its allocation (and free) is recorded.
                    let buf = unsafe { cuda.alloc::<f32>(4096)? };
                    if matches!(between, Between::Allocation) {
                        held.push(buf);
                    }
                }
                device::kv_write(&k_cache, &v_cache, &k, &v, &slots)?;
            }
            Ok(())
        };
        device::warm_up(&dev, chain)?;
        let Some((graph, ())) = device::record(&dev, chain)? else { return Err("the driver recorded no graph".into()) };
        graph.replay()?;
        dev.synchronize()?;
        let start = Instant::now();
        for _ in 0..replays {
            graph.replay()?;
        }
        dev.synchronize()?;
        let us = start.elapsed().as_secs_f64() * 1e6 / (replays * kernels) as f64;
        println!("{between:?} between kernels: {us:.2} us a kernel");
    }
    Ok(())
}
