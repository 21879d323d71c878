//! The memory estimate beside the training settings: the planner's dry run of one step of the
//! configured run on the app's adapter, recomputed when the settings change, and the check that
//! refuses a run that cannot fit before it starts.

use crate::gpu::Gpu;
use crate::train::config::TrainConfig;
use crate::train::plan::{self, human, MemoryPlan};

/// The last estimate and the config it was made for.
#[derive(Default)]
pub struct MemoryEstimate {
    cfg: Option<TrainConfig>,
    plan: Option<Result<MemoryPlan, String>>,
}

impl MemoryEstimate {
    /// The plan for `cfg`, recomputed only when the config changed.
    pub fn get(&mut self, gpu: &Gpu, cfg: &TrainConfig) -> &Result<MemoryPlan, String> {
        if self.plan.is_none() || self.cfg.as_ref() != Some(cfg) {
            self.cfg = Some(cfg.clone());
            self.plan = Some(plan::plan(gpu, cfg, 1));
        }
        self.plan.get_or_insert_with(|| Err("no estimate".into()))
    }

    /// One line for the settings panel, and whether it is a problem.
    pub fn line(&mut self, gpu: &Gpu, cfg: &TrainConfig, budget: Option<u64>) -> (String, bool) {
        match self.get(gpu, cfg) {
            Err(e) => (format!("GPU memory: no estimate ({e})"), true),
            Ok(p) if p.limit_error.is_some() => (
                "GPU memory: a tensor of this run is larger than the adapter allows".into(),
                true,
            ),
            Ok(p) => match budget {
                Some(b) => (
                    format!(
                        "GPU memory per step: {} of {} ({:.0}%)",
                        human(p.worst_bytes),
                        human(b),
                        100.0 * p.worst_bytes as f64 / b as f64
                    ),
                    p.worst_bytes > b,
                ),
                None => (
                    format!("GPU memory per step: {}", human(p.worst_bytes)),
                    false,
                ),
            },
        }
    }
}

/// The preset a first start trains: the small one on a CPU adapter (a step of anything larger
/// takes seconds there), else the largest preset whose step fits the adapter's memory by the
/// planner's estimate; where there is no estimate, the laptop ViT-S preset on a discrete GPU
/// and the tiny one on others.
pub fn first_run_preset(gpu: &Gpu) -> &'static str {
    match gpu.info.device_type {
        wgpu::DeviceType::Cpu => return "debug",
        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu => {}
        _ => return "debug",
    }
    let Some(budget) = plan::device_memory(gpu) else {
        return if gpu.info.device_type == wgpu::DeviceType::DiscreteGpu {
            "laptop"
        } else {
            "tiny"
        };
    };
    for name in ["laptop", "tiny"] {
        let Ok(cfg) = TrainConfig::preset(name) else {
            continue;
        };
        if let Ok(p) = plan::plan(gpu, &cfg, 1) {
            if plan::check_fits(gpu, &cfg, &p, Some(budget)).is_ok() {
                return name;
            }
        }
    }
    "debug"
}
