//! Adapter choice, device creation, pipeline cache and readback.

use super::pool::{Pool, PoolStats};
use super::registry::{shader_source_typed, Access, Kernel, Types};
use super::tensor::DType;
use super::tensor::Tensor;
use super::{GpuError, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

mod adapter;
mod choices;
mod coop;
mod hold;
mod profile;
mod transfer;
use adapter::{named, pick_adapter};
use coop::{coop_config, coop_wanted, Coop};
use hold::futures_channel;
pub(crate) use hold::{DeviceHolder, Exclusive};
pub use profile::{KernelTime, Profile, WorkTime};
pub use transfer::{Staged, Submitted};

/// Which backend and adapter to use; `None` means "the best one available".
#[derive(Clone, Debug, Default)]
pub struct AdapterChoice {
    /// Backend name: vulkan, metal, dx12, gl, webgpu (comma list allowed).
    pub backend: Option<String>,
    /// Case-insensitive substring of the adapter name.
    pub adapter: Option<String>,
}

impl AdapterChoice {
    /// Reads `DINOSCOPE_BACKEND` and `DINOSCOPE_ADAPTER` (and wgpu's `WGPU_BACKEND`,
    /// `WGPU_ADAPTER_NAME` as fallbacks); explicit values given later override them.
    pub fn from_env() -> Self {
        let get = |a: &str, b: &str| {
            std::env::var(a)
                .ok()
                .or_else(|| std::env::var(b).ok())
                .filter(|s| !s.trim().is_empty())
        };
        AdapterChoice {
            backend: get("DINOSCOPE_BACKEND", "WGPU_BACKEND"),
            adapter: get("DINOSCOPE_ADAPTER", "WGPU_ADAPTER_NAME"),
        }
    }
}

pub(crate) struct Pipeline {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
}

type PipelineKey = (&'static str, &'static str, Types, Vec<(String, u64)>);

/// A wgpu device with the runtime's caches. Cheap to share behind an `Arc`.
pub struct Gpu {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What the adapter says about itself.
    pub info: wgpu::AdapterInfo,
    /// Limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// Features enabled on the device.
    pub features: wgpu::Features,
    modules: Mutex<HashMap<(&'static str, Types), Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    pub(crate) pool: Arc<Mutex<Pool>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Bound where a kernel's optional input is absent.
    pub(crate) dummy_read: Tensor,
    /// Bound where a kernel's optional output is absent.
    pub(crate) dummy_write: Tensor,
    /// A second one, for kernels with two absent outputs (writable bindings must not alias).
    pub(crate) dummy_write2: Tensor,
    /// A dry run: tensors have sizes but no buffers and nothing is recorded or submitted, so
    /// code run against it leaves exactly the pool's books of a real run (the memory planner).
    pub(crate) dry: bool,
    /// A smaller piece size for flat-buffer updates than the binding limit gives (0: none).
    chunk_limit: std::sync::atomic::AtomicUsize,
    /// The thread that holds the device (recording, or on GL any device call) and how many
    /// holds it has open; shared with dry-run twins, which use the same device.
    holder: Arc<DeviceHolder>,
    /// Every device call holds the device (GL: see [`Gpu::exclusive`]).
    serial: bool,
    /// The f16 cooperative matrices the matmul may use, if any.
    coop: Option<Coop>,
    /// Why cooperative matrices the adapter offers are not used (a failed probe).
    coop_off: Option<String>,
    /// Every cooperative-matrix configuration the adapter offers, as `info` lists them.
    coop_offered: Vec<String>,
    /// Kernel choices by key (tuned matmul plans), and the keys a dry run asked for.
    choices: Mutex<std::collections::BTreeMap<String, String>>,
    shapes: Mutex<std::collections::BTreeSet<String>>,
    /// Keys that missed `choices`, each with the stored key that stands in for it, if any
    /// (see [`Gpu::nearest_choice`]); emptied whenever a choice is stored.
    nearest: Mutex<std::collections::BTreeMap<String, Option<String>>>,
    /// GPU time by kernel entry and by piece of work while profiling (see
    /// [`Gpu::start_profile`]).
    profile: Mutex<Option<profile::Tables>>,
}

/// Features we use when the adapter offers them.
fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY
}

impl Gpu {
    /// Opens a device on the chosen adapter, with the adapter's own limits.
    pub async fn new(choice: &AdapterChoice) -> Result<Gpu> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(b) = &choice.backend {
            let backends = wgpu::Backends::from_comma_list(b);
            if backends.is_empty() {
                return Err(GpuError::NoAdapter(format!(
                    ": unknown backend '{b}' (use vulkan, metal, dx12, gl or webgpu)"
                )));
            }
            desc.backends = backends;
        }
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = pick_adapter(&instance, backends, choice).await?;
        Self::from_adapter(adapter).await
    }

    /// Blocking [`Gpu::new`] for native code.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(choice: &AdapterChoice) -> Result<Gpu> {
        pollster::block_on(Self::new(choice))
    }

    /// Opens a device on an adapter the caller already chose.
    pub async fn from_adapter(adapter: wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&Self::device_descriptor(&adapter))
            .await
            .map_err(|e| GpuError::Device {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;
        let mut gpu = Self::from_device(device, queue, info);
        gpu.adopt_coop(&adapter);
        Ok(gpu)
    }

    /// What the runtime asks of an adapter: its own limits, and the features the kernels use
    /// where offered. Whoever creates the device for us (eframe) asks for the same.
    pub fn device_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
        let mut features = adapter.features() & wanted_features();
        if coop_wanted() && coop_config(adapter).is_some() {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        wgpu::DeviceDescriptor {
            label: Some("dinoscope"),
            required_features: features,
            required_limits: adapter.limits(),
            // SAFETY: the one experimental feature asked for is cooperative matrices, and only
            // on adapters that list an f16 configuration the matmul is written for; the kernel
            // is checked against the plain path by selftest and the kernel tests.
            experimental_features: if features
                .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            {
                unsafe { wgpu::ExperimentalFeatures::enabled() }
            } else {
                wgpu::ExperimentalFeatures::disabled()
            },
            ..Default::default()
        }
    }

    /// Wraps an existing device (for example eframe's), so the UI and the runtime share it.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Gpu {
        let info = named(info);
        let serial = info.backend == wgpu::Backend::Gl;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let limits = device.limits();
        let features = device.features();
        let pool = Arc::new(Mutex::new(Pool::default()));
        let dummy = |label| {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            Tensor::from_buffer(
                Some(buffer),
                vec![4],
                16,
                std::sync::Weak::new(),
                DType::F32,
            )
        };
        let dummy_read = dummy("dummy-read");
        let dummy_write = dummy("dummy-write");
        let dummy_write2 = dummy("dummy-write-2");
        Gpu {
            device,
            queue,
            info,
            limits,
            features,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pool,
            errors,
            dummy_read,
            dummy_write,
            dummy_write2,
            dry: false,
            chunk_limit: Default::default(),
            serial,
            holder: Arc::default(),
            coop: None,
            coop_off: None,
            coop_offered: Vec::new(),
            choices: Mutex::default(),
            shapes: Mutex::default(),
            nearest: Mutex::default(),
            profile: Mutex::default(),
        }
    }

    /// A dry-run twin of this device: same adapter, limits and features, its own empty pool, no
    /// buffers and no GPU work. Running a step against it gives the step's exact peak memory in
    /// [`Gpu::pool_stats`] without allocating it.
    pub fn dry_run(&self) -> Gpu {
        Gpu {
            device: self.device.clone(),
            queue: self.queue.clone(),
            info: self.info.clone(),
            limits: self.limits.clone(),
            features: self.features,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pool: Arc::new(Mutex::new(Pool::with_census())),
            errors: Arc::default(),
            dummy_read: self.dummy_read.clone(),
            dummy_write: self.dummy_write.clone(),
            dummy_write2: self.dummy_write2.clone(),
            dry: true,
            chunk_limit: Default::default(),
            serial: self.serial,
            holder: self.holder.clone(),
            coop: self.coop,
            coop_off: self.coop_off.clone(),
            coop_offered: self.coop_offered.clone(),
            choices: Mutex::new(self.choices()),
            shapes: Mutex::default(),
            nearest: Mutex::default(),
            profile: Mutex::default(),
        }
    }

    /// Elements per chunk when a flat buffer is updated piecewise: as many as one storage
    /// binding holds, in whole multiples of 131,072 (so chunks, and the reduction partials of
    /// their 2,048-element blocks, start on view boundaries).
    pub fn binding_chunk(&self) -> usize {
        const ALIGN: usize = 1 << 17;
        let mut elems = (self.limits.max_storage_buffer_binding_size / 4) as usize;
        let limit = self.chunk_limit.load(std::sync::atomic::Ordering::Relaxed);
        if limit > 0 {
            elems = elems.min(limit);
        }
        (elems / ALIGN).max(1) * ALIGN
    }

    /// Caps [`Gpu::binding_chunk`] at `elems` (rounded down to its alignment, at least one
    /// piece): mimics an adapter with a smaller binding limit (tests of the piecewise updates).
    pub fn limit_binding_chunk(&self, elems: usize) {
        self.chunk_limit
            .store(elems, std::sync::atomic::Ordering::Relaxed);
    }

    /// `(start, len)` pieces of `n` elements, each at most [`Gpu::binding_chunk`] long.
    pub fn binding_chunks(&self, n: usize) -> Vec<(usize, usize)> {
        let c = self.binding_chunk();
        (0..n.max(1))
            .step_by(c)
            .map(|s| (s, c.min(n - s.min(n))))
            .collect()
    }

    /// Waits until no other thread is recording, then marks this thread as recording. Buffers go
    /// back to the pool as soon as the recording code drops them, so two recordings open at once
    /// on different threads could each take a buffer the other's unsubmitted work still uses;
    /// one recording thread at a time keeps every reuse in submission order. Recording is host
    /// work only: GPU execution is not waited for. Re-entrant on the same thread.
    pub(crate) fn begin_recording(&self) {
        if self.holder.enter() {
            if let Ok(mut p) = self.pool.lock() {
                p.next_epoch();
            }
        }
    }

    /// Ends one [`Gpu::begin_recording`] of this thread.
    pub(crate) fn end_recording(&self) {
        self.holder.leave();
    }

    /// Holds the device for this thread where the driver cannot take two threads at once; a
    /// no-op elsewhere. wgpu's GL backend panics ("Could not lock adapter context") when a thread
    /// waits over a second for the GL context while another thread holds it waiting for the GPU,
    /// which a slow software adapter does for seconds; on GL every device call of the runtime
    /// (buffers, uploads, recordings, readbacks, waits) therefore takes turns.
    pub(crate) fn exclusive(&self) -> Exclusive<'_> {
        if self.serial {
            self.holder.enter();
        }
        Exclusive(self.serial.then_some(&self.holder))
    }

    /// Whether every device call takes turns (the GL backend).
    pub fn is_serial(&self) -> bool {
        self.serial
    }

    /// Whether this is a dry-run device (see [`Gpu::dry_run`]).
    pub fn is_dry(&self) -> bool {
        self.dry
    }

    /// Returns (and clears) errors wgpu reported since the last call.
    pub fn check(&self) -> Result<()> {
        let mut errs = self
            .errors
            .lock()
            .map_err(|_| GpuError::Wgpu("poisoned".into()))?;
        if errs.is_empty() {
            Ok(())
        } else {
            let msg = errs.join("; ");
            errs.clear();
            Err(GpuError::Wgpu(msg))
        }
    }

    /// Whether the adapter is a CPU driver (lavapipe, llvmpipe, WARP), whose kernels want other
    /// layouts than a GPU's (the direct matmuls, one invocation per row).
    pub fn cpu_driver(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether the kernels can share reads through subgroup operations: native adapters with
    /// SUBGROUP. In the browser the WGSL goes to the browser as written, which would want an
    /// `enable subgroups;` that wgpu's own shader compiler does not take.
    pub fn subgroups(&self) -> bool {
        !cfg!(target_arch = "wasm32") && self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// Whether GPU timestamps can be taken on this device.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Buffer pool statistics (bytes live, cached, peak).
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.lock().map(|p| p.stats()).unwrap_or_default()
    }

    /// Starts a new peak-memory measurement from what is allocated now.
    pub fn reset_peak_memory(&self) {
        if let Ok(mut p) = self.pool.lock() {
            p.reset_peak();
        }
    }

    /// The largest live buffers at the peak of a dry run (see [`Gpu::dry_run`]).
    pub fn largest_at_peak(&self) -> Vec<super::pool::LiveBuffers> {
        self.pool
            .lock()
            .map(|p| p.largest_at_peak())
            .unwrap_or_default()
    }

    /// Frees the buffers the pool keeps for reuse.
    pub fn trim_pool(&self) {
        if let Ok(mut p) = self.pool.lock() {
            p.trim();
        }
    }

    fn module(&self, shader: &'static str, types: Types) -> Arc<wgpu::ShaderModule> {
        let _device = self.exclusive();
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        modules
            .entry((shader, types))
            .or_insert_with(|| {
                let src = shader_source_typed(shader, types)
                    .unwrap_or_else(|| panic!("unknown shader '{shader}'"));
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(shader),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                };
                #[cfg(not(target_arch = "wasm32"))]
                let module = {
                    // Loop bounding keeps accumulator arrays from being unrolled into registers: on
                    // NVIDIA a tiled matmul ran 17x slower with it. Our loops all have fixed bounds.
                    let mut checks = wgpu::ShaderRuntimeChecks {
                        force_loop_bounding: false,
                        ..wgpu::ShaderRuntimeChecks::checked()
                    };
                    if super::registry::indexes_proven(shader) {
                        checks.bounds_checks = false;
                    }
                    // SAFETY: every loop in our shaders terminates (bounded by params or
                    // constants), and `indexes_proven` lists only shaders whose every index is
                    // in range by construction (see there).
                    unsafe { self.device.create_shader_module_trusted(desc, checks) }
                };
                #[cfg(target_arch = "wasm32")]
                let module = self.device.create_shader_module(desc);
                Arc::new(module)
            })
            .clone()
    }

    /// Whether [`Gpu::pipeline`] has built this pipeline on this device already.
    pub(crate) fn has_pipeline(
        &self,
        k: &'static Kernel,
        types: Types,
        overrides: &[(&str, f64)],
    ) -> bool {
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&pipeline_key(k, types, overrides))
    }

    /// The compute pipeline for a kernel with the given override constants (cached).
    pub(crate) fn pipeline(
        &self,
        k: &'static Kernel,
        types: Types,
        overrides: &[(&str, f64)],
    ) -> Arc<Pipeline> {
        let key = pipeline_key(k, types, overrides);
        if let Some(p) = self
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return p.clone();
        }
        let _device = self.exclusive();
        let module = self.module(k.shader, types);
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for &(binding, a) in k.bindings {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: a == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(k.entry),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(k.entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        // A driver that reports its compiler's statistics while it compiles (bench/shader_stats.sh)
        // prints them right after this line, which names the pipeline they belong to.
        log::debug!(
            "compiling pipeline {}::{} S={:?} O={:?} {:?}",
            k.shader,
            k.entry,
            types.s,
            types.o,
            overrides
        );
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.entry),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(k.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: overrides,
                    // Every kernel writes its workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, p.clone());
        p
    }

    /// A multi-line description: adapter, backend, driver, limits and features.
    pub fn describe(&self) -> String {
        let i = &self.info;
        let l = &self.limits;
        let mut s = String::new();
        s += &format!("adapter:  {} ({:?})\n", i.name, i.device_type);
        s += &format!("backend:  {:?}\n", i.backend);
        s += &format!("driver:   {} {}\n", i.driver, i.driver_info);
        s += &format!("vendor:   0x{:04x}  device: 0x{:04x}\n", i.vendor, i.device);
        s += "limits:\n";
        s += &format!(
            "  max_storage_buffer_binding_size     {}\n",
            l.max_storage_buffer_binding_size
        );
        s += &format!(
            "  max_buffer_size                     {}\n",
            l.max_buffer_size
        );
        s += &format!(
            "  max_storage_buffers_per_shader_stage {}\n",
            l.max_storage_buffers_per_shader_stage
        );
        s += &format!(
            "  max_compute_workgroup_storage_size  {}\n",
            l.max_compute_workgroup_storage_size
        );
        s += &format!(
            "  max_compute_invocations_per_workgroup {}\n",
            l.max_compute_invocations_per_workgroup
        );
        s += &format!(
            "  max_compute_workgroup_size          {}x{}x{}\n",
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z
        );
        s += &format!(
            "  max_compute_workgroups_per_dimension {}\n",
            l.max_compute_workgroups_per_dimension
        );
        s += &format!(
            "  max_uniform_buffer_binding_size     {}\n",
            l.max_uniform_buffer_binding_size
        );
        s += &format!(
            "  min_uniform_buffer_offset_alignment {}\n",
            l.min_uniform_buffer_offset_alignment
        );
        s += &format!(
            "  max_bind_groups                     {}\n",
            l.max_bind_groups
        );
        let f = self.features;
        let has = |x: wgpu::Features| if f.contains(x) { "yes" } else { "no" };
        s += "features:\n";
        s += &format!("  SHADER_F16      {}\n", has(wgpu::Features::SHADER_F16));
        s += &format!("  SUBGROUP        {}\n", has(wgpu::Features::SUBGROUP));
        s += &format!(
            "  TIMESTAMP_QUERY {}\n",
            has(wgpu::Features::TIMESTAMP_QUERY)
        );
        s += &match (self.coop, &self.coop_off) {
            (Some(Coop { side, lanes }), _) => {
                let when = if self.coop_by_default() {
                    "f16 matmuls"
                } else if self.cpu_driver() {
                    "emulated here: f16 matmuls tuned to it, or with DINOSCOPE_COOP=1"
                } else {
                    "not timed here yet: f16 matmuls tuned to it (dinoscope tune), or with \
                     DINOSCOPE_COOP=1"
                };
                let attention = if self.coop_attention() {
                    ""
                } else {
                    ", not in attention"
                };
                format!(
                    "  COOP_MATRIX     f16 {side}x{side}x{side}, {lanes} lanes ({when}{attention})\n"
                )
            }
            (None, Some(why)) => format!("  COOP_MATRIX     offered, turned off: {why}\n"),
            (None, None) => "  COOP_MATRIX     no\n".to_string(),
        };
        if !self.coop_offered.is_empty() {
            s += &format!("    offered: {}\n", self.coop_offered.join(", "));
        }
        s
    }
}

/// The cache key of a kernel's pipeline with these types and override constants.
fn pipeline_key(k: &'static Kernel, types: Types, overrides: &[(&str, f64)]) -> PipelineKey {
    (
        k.shader,
        k.entry,
        types,
        overrides
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_bits()))
            .collect(),
    )
}
