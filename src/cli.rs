//! The command line's arguments (clap), and its entry point; [`dispatch`] runs the command.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod dispatch;
use dispatch::dispatch;

/// DINOv2-style Vision Transformers on any GPU through wgpu and hand-written WGSL.
#[derive(Parser)]
#[command(name = "dinoscope", version, about)]
struct Cli {
    /// GPU backend: vulkan, metal, dx12, gl (default: the best available; env DINOSCOPE_BACKEND).
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Adapter whose name contains this text (env DINOSCOPE_ADAPTER).
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the window: train with live curves and attention maps, or inspect a model
    /// (the default when no command is given).
    App {
        /// Ignore the saved settings and start as on a first run.
        #[arg(long)]
        reset: bool,
        /// Save a screenshot of the window here once `--after-steps` steps are trained and
        /// their attention maps shown, then quit (for tests and docs).
        #[arg(long)]
        screenshot: Option<PathBuf>,
        /// Steps to train before the screenshot.
        #[arg(long, default_value_t = 3)]
        after_steps: u64,
        /// A setting over the first-run defaults, KEY=VALUE (repeatable): train, preset,
        /// batch, width, depth, locals, steps, minutes, eval, maps, seed.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Print the adapter, backend, driver, limits and features.
    Info,
    /// Print a shell completion script: `dinoscope completions bash > ~/.local/share/bash-completion/completions/dinoscope`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Check every kernel against its CPU twin and against a golden fixtures folder.
    Selftest {
        /// Folder in the golden format (manifest.json + safetensors); default: the bundled one.
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// Skip the kernel-vs-CPU checks; run only the fixture cases.
        #[arg(long)]
        fixtures_only: bool,
        /// Run only the cases whose name contains this text (repeatable: any of them), e.g.
        /// `--only kernel.attention`.
        #[arg(long, value_name = "TEXT")]
        only: Vec<String>,
        /// Leave out the cases whose name contains this text (repeatable).
        #[arg(long, value_name = "TEXT")]
        skip: Vec<String>,
        /// Print the names of the cases these options select, without running them.
        #[arg(long)]
        list: bool,
    },
    /// Image features (CLS and mean patch token) of images or folders, into a safetensors file.
    Embed {
        /// Backbone weights (safetensors, Hugging Face or torch-hub names).
        /// A file, or a Hugging Face repository id (facebook/dinov2-small): from the Hugging
        /// Face cache, downloaded into it when not there.
        #[arg(long)]
        weights: PathBuf,
        /// Branch, tag or commit of a repository id given as --weights [default: main].
        #[arg(long)]
        revision: Option<String>,
        /// Config: a preset (vits14, vits14_reg, …), a config.json or a .ron file
        /// (default: the config the weights carry, else the one beside them, else inferred).
        #[arg(long)]
        config: Option<String>,
        /// Images (png, jpeg, webp) or folders of them (searched recursively).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Output file.
        #[arg(short, long, default_value = "features.safetensors")]
        output: PathBuf,
        /// Replace the output file if it exists.
        #[arg(long)]
        overwrite: bool,
        /// Shorter side, then centre crop (a multiple of the patch size is kept).
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Images per forward pass.
        #[arg(long, default_value_t = 16, value_parser = at_least_one)]
        batch: usize,
        /// Storage precision of weights and activations: f16 halves their memory and
        /// traffic (needs SHADER_F16; products still accumulate in f32).
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
    },
    /// CLS attention per head (raw and thresholded), its head mean over the image, and a PCA
    /// map of the patch features, as PNG files.
    Attention {
        /// Backbone weights (safetensors).
        /// A file, or a Hugging Face repository id (facebook/dinov2-small): from the Hugging
        /// Face cache, downloaded into it when not there.
        #[arg(long)]
        weights: PathBuf,
        /// Branch, tag or commit of a repository id given as --weights [default: main].
        #[arg(long)]
        revision: Option<String>,
        /// Config: preset name, config.json or .ron (default: carried by the weights, beside
        /// them, or inferred).
        #[arg(long)]
        config: Option<String>,
        /// The image.
        image: PathBuf,
        /// Output folder.
        #[arg(short, long, default_value = "attention")]
        output: PathBuf,
        /// Replace the maps in the output folder if it holds some.
        #[arg(long)]
        overwrite: bool,
        /// Layer whose attention is shown (default: the last).
        #[arg(long)]
        layer: Option<usize>,
        /// Shorter side of the resized image.
        #[arg(long, default_value_t = 448)]
        size: usize,
        /// Share of the attention mass the thresholded maps keep.
        #[arg(long, default_value_t = 0.6, value_parser = fraction)]
        threshold: f32,
        /// Storage precision of weights and activations: f16 halves their memory and
        /// traffic (needs SHADER_F16; products still accumulate in f32).
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
    },
    /// Train a ViT with DINOv2 (DINO + iBOT + KoLeo) on images; the bundled Fashion-MNIST by default.
    ///
    /// Ctrl-C (or SIGTERM, SIGHUP) stops the run at its next step and writes a checkpoint
    /// there (exit status 130); continue it with --resume. A second Ctrl-C quits at once.
    Train {
        /// Training config: a preset (debug, debug_long, debug_v3, fmnist, tiny, laptop, vits14) or a .ron file
        /// [default: debug; a resumed run keeps its own].
        #[arg(long)]
        config: Option<String>,
        /// Training data: a folder of images (searched recursively) or an IDX file.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Run folder (checkpoints, metrics.jsonl). Default: a new folder
        /// runs/<date>-<time>-<config> for a new run (runs/latest points at it), and
        /// runs/latest with --resume.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue from the run folder's last checkpoint (exactly where it stopped), on the
        /// data the run was started on unless --data says otherwise.
        #[arg(long)]
        resume: bool,
        /// Stop after this many steps in this invocation (at least 1).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        stop_after: Option<u64>,
        /// Start a new run in a folder that already holds one (replacing it).
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Length of a new run in steps, replacing the config's: the cosine schedules span
        /// it, and a shorter run scales its warm-ups with it (not with --resume: a resumed run
        /// keeps its checkpoint's length; --stop-after ends this invocation sooner).
        #[arg(long, conflicts_with = "resume")]
        steps: Option<u64>,
        /// Fit a new run into this wall time (900s, 15m, 1.5h): the first steps are timed,
        /// then the schedule spans what fits, evaluations included; the run also stops there.
        #[arg(long, value_parser = dinoscope::train::budget::parse_duration,
              conflicts_with_all = ["resume", "steps"])]
        time_limit: Option<std::time::Duration>,
    },
    /// k-NN accuracy (k = 20, T = 0.07) of a backbone's CLS features and a linear probe on
    /// its CLS and mean patch tokens.
    #[command(visible_alias = "eval")]
    Knn {
        /// Backbone weights (safetensors; ours or Hugging Face's).
        /// A file, or a Hugging Face repository id (facebook/dinov2-small): from the Hugging
        /// Face cache, downloaded into it when not there.
        #[arg(long)]
        weights: PathBuf,
        /// Branch, tag or commit of a repository id given as --weights [default: main].
        #[arg(long)]
        revision: Option<String>,
        /// Config: preset name, config.json or .ron (default: carried by the weights, beside
        /// them, or inferred).
        #[arg(long)]
        config: Option<String>,
        /// Labelled training images: a folder with one subfolder per class, an IDX file, or
        /// `fashion-mnist` for the bundled subset (unless a file or folder has that name).
        #[arg(long)]
        train: String,
        /// Labelled test images (same forms).
        #[arg(long)]
        test: String,
        /// Image size.
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Neighbours.
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        k: usize,
        /// Storage precision of weights and activations: f16 halves their memory and
        /// traffic (needs SHADER_F16; products still accumulate in f32).
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
    },
    /// Time the matmul plans and attention kernels on this adapter for the products and
    /// attention passes of training configs, and cache the fastest (loaded by every later run
    /// on this adapter).
    Tune {
        /// Training configs whose step products are tuned (presets or .ron files).
        #[arg(long, value_delimiter = ',', default_value = "debug,tiny")]
        config: Vec<String>,
        /// Images per step (overrides the configs; products depend on it).
        #[arg(long)]
        batch: Option<usize>,
        /// Training precision (overrides the configs): `mixed` tunes the f16 products, with
        /// the cooperative-matrix kernel among the candidates where the adapter has it.
        #[arg(long)]
        precision: Option<String>,
        /// Repetitions per candidate (the median is compared).
        #[arg(long, default_value_t = 3, value_parser = repetitions)]
        reps: usize,
    },
    /// Hands a run on: `--to dinov2` writes the official DINOv2 trainer's config.yaml with
    /// this run's values, the student, teacher and heads under the official module names,
    /// and a script that makes the checkpoint the trainer and its evaluation scripts load;
    /// `--to hf` writes the teacher backbone as a model folder transformers' AutoModel loads.
    Export {
        /// Run folder (its newest checkpoint that verifies is exported).
        run: PathBuf,
        /// Target: dinov2 (facebookresearch/dinov2's trainer) or hf (the teacher backbone
        /// as a Hugging Face model folder for transformers' AutoModel).
        #[arg(long)]
        to: String,
        /// Output folder [default: RUN/export-dinov2 or RUN/export-hf].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Replace files an earlier export left in the output folder.
        #[arg(long)]
        overwrite: bool,
    },
    /// Peak GPU memory of a training step, whether it fits this adapter, and what would fit if not.
    Plan {
        /// Training config: a preset (debug, debug_long, debug_v3, fmnist, tiny, laptop, vits14) or a .ron file.
        #[arg(long, default_value = "debug")]
        config: String,
        /// Images per step (overrides the config).
        #[arg(long)]
        batch: Option<usize>,
        /// Activation checkpointing: off, all, or the number of blocks (overrides the config).
        #[arg(long)]
        checkpoint: Option<String>,
        /// Precision: f32, or mixed (f16 copies of the weights, f16 activations, f16
        /// backward products with a dynamic loss scale; needs SHADER_F16) (overrides the
        /// config).
        #[arg(long)]
        precision: Option<String>,
        /// GPU memory to plan for (e.g. 4GiB; 4GB is 4·10⁹ bytes; default: the adapter's).
        #[arg(long)]
        memory: Option<String>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Training-step img/s and peak GPU memory (on the bundled Fashion-MNIST subset unless
    /// --data says).
    Train {
        /// Training preset or .ron file.
        #[arg(long, default_value = "debug")]
        config: String,
        /// An image folder or IDX file to load batches from (default: the bundled subset).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Steps to time (after one warm-up step).
        #[arg(long, default_value_t = 5, value_parser = at_least_one_u64)]
        steps: u64,
        /// Images per step (overrides the config).
        #[arg(long)]
        batch: Option<usize>,
        /// Activation checkpointing: off, all, or the number of blocks (overrides the config).
        #[arg(long)]
        checkpoint: Option<String>,
        /// Precision: f32, or mixed (f16 copies of the weights, f16 activations, f16
        /// backward products with a dynamic loss scale; needs SHADER_F16) (overrides the
        /// config).
        #[arg(long)]
        precision: Option<String>,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Then time the same number of steps again kernel by kernel (GPU timestamps, one
        /// pass per dispatch) and print where the step's time goes.
        #[arg(long)]
        profile: bool,
    },
    /// Data loader img/s (crops and masks, no GPU): one thread, then the config's workers.
    Loader {
        /// Training preset or .ron file.
        #[arg(long, default_value = "debug")]
        config: String,
        /// An image folder or IDX file (default: the bundled subset).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Worker threads (overrides the config).
        #[arg(long)]
        workers: Option<usize>,
        /// Batches to time with the workers.
        #[arg(long, default_value_t = 40, value_parser = at_least_one_u64)]
        batches: u64,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// ViT inference img/s and peak GPU memory with random weights.
    Vit {
        /// Model preset (vits14, vits14_reg, vitb14, …) or config file.
        #[arg(long, default_value = "vits14")]
        config: String,
        /// Storage precision of weights and activations: f16 halves their memory and
        /// traffic (needs SHADER_F16; products still accumulate in f32).
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,

        /// Runs as SIZExBATCH (default: 224x1, 224x64, 518x8).
        #[arg(long, value_delimiter = ',', default_value = "224x1,224x64,518x8")]
        runs: Vec<String>,
        /// Repetitions per run (the median is reported).
        #[arg(long, default_value_t = 5, value_parser = repetitions)]
        reps: usize,
        /// Then time every dispatch of each run's forward and print its GPU time by kernel
        /// and by product and attention pass (needs GPU timestamps).
        #[arg(long)]
        profile: bool,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Kernel throughput: matmul GFLOP/s; copy, layer norm, GELU, softmax, residual,
    /// AdamW and EMA GB/s; attention times.
    Kernels {
        /// Repetitions per measurement (the median is reported).
        #[arg(long, default_value_t = 5, value_parser = repetitions)]
        reps: usize,
        /// Skip the largest sizes (matmul 4096, attention at batch 64).
        #[arg(long)]
        quick: bool,
        /// Also time the general matmul kernel beside each matmul (before/after).
        #[arg(long)]
        general: bool,
        /// Also time every vec4 matmul tile beside each square matmul.
        #[arg(long)]
        tiles: bool,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

/// Storage precision of an inference command.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Precision {
    /// 32-bit floats everywhere.
    F32,
    /// Weights and activations stored as 16-bit floats, computed in f32.
    F16,
}

impl Precision {
    fn dtype(self) -> dinoscope::gpu::DType {
        match self {
            Precision::F32 => dinoscope::gpu::DType::F32,
            Precision::F16 => dinoscope::gpu::DType::F16,
        }
    }
}

/// A share in (0, 1] (NaN and the ends outside refused).
fn fraction(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!("{s} is not in (0, 1]"))
    }
}

/// A count of at least 1, as u64.
fn at_least_one_u64(s: &str) -> Result<u64, String> {
    at_least_one(s).map(|v| v as u64)
}

/// Repetitions of a timing: 1 to 100 (more only makes a run that takes hours for figures
/// no steadier).
fn repetitions(s: &str) -> Result<usize, String> {
    match at_least_one(s)? {
        v if v <= 100 => Ok(v),
        v => Err(format!("{v} repetitions: at most 100")),
    }
}

/// A count of at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!("'{s}' is not a whole number ≥ 1")),
    }
}

/// Parses the arguments, runs the command and turns its error into a message and exit status 1.
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    pipe_ends_printing(&cli);
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            // Unchecked: a terminal that hung up (SIGHUP) fails the write, and the exit
            // status still says it.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("error: {e}\n").as_bytes(),
            );
            ExitCode::FAILURE
        }
    }
}

/// A command that only prints ends quietly, as other tools do, when the reader of its
/// output goes away (`| head`). The others keep the write errors instead: a closed pipe
/// must not end a run before its checkpoint, nor a first-run calibration part way.
fn pipe_ends_printing(cli: &Cli) {
    let prints = matches!(
        &cli.command,
        Some(
            Command::Completions { .. }
                | Command::Info
                | Command::Plan { .. }
                | Command::Bench {
                    what: BenchWhat::Loader { .. },
                    ..
                }
        )
    );
    #[cfg(unix)]
    if prints {
        // SAFETY: restores the default action of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    #[cfg(not(unix))]
    let _ = prints;
}
