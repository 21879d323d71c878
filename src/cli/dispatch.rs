//! Runs the command the arguments name: opens the GPU, then hands over to `commands` (or the
//! app, or a benchmark).

use super::*;
use crate::commands;
use dinoscope::gpu::{AdapterChoice, Gpu};

fn open_gpu(cli: &Cli) -> Result<Gpu, String> {
    let mut choice = AdapterChoice::from_env();
    if cli.backend.is_some() {
        choice.backend = cli.backend.clone();
    }
    if cli.adapter.is_some() {
        choice.adapter = cli.adapter.clone();
    }
    let mut gpu = Gpu::new_blocking(&choice).map_err(|e| e.to_string())?;
    if let Err(e) = dinoscope::kernels::matmul::probe_coop(&mut gpu) {
        eprintln!("warning: {e}; f16 products use the plain kernels");
    }
    // Tuned matmul plans of this adapter, if `dinoscope tune` ran on it, and its tile for
    // large products and f16 attention (timed on its first run, then cached).
    if let Err(e) = dinoscope::tune::load(&gpu) {
        eprintln!("warning: {e}");
    }
    match dinoscope::tune::calibrate_first_run(&gpu) {
        Ok(lines) => lines.iter().for_each(|l| log::info!("{l}")),
        Err(e) => eprintln!("warning: {e}"),
    }
    Ok(gpu)
}

/// Opens the app window (`dinoscope` or `dinoscope app`).
#[cfg(feature = "app")]
fn run_app(
    reset: bool,
    screenshot: Option<PathBuf>,
    after_steps: u64,
    set: &[String],
) -> Result<ExitCode, String> {
    let mut params = Vec::new();
    // Checked before a window opens: a setting the app cannot use is an error here, not a
    // notice in a window a script waits on.
    let mut check = dinoscope::app::settings::AppSettings::first_run();
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv}: expected KEY=VALUE"))?;
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        check
            .apply_param(&k, &v)
            .map_err(|e| format!("--set {kv}: {e}"))?;
        params.push((k, v));
    }
    if !set.is_empty() {
        check
            .train
            .to_config()
            .map_err(|e| format!("--set {}: {e}", set.join(" ")))?;
    }
    if let Some(shot) = &screenshot {
        screenshot_free(shot)?;
    }
    let automation = dinoscope::app::Automation {
        screenshot,
        after_steps,
        params,
        ..Default::default()
    };
    Ok(match dinoscope::app::run_native(reset, automation)? {
        dinoscope::app::Closed::Normally => ExitCode::SUCCESS,
        dinoscope::app::Closed::Interrupted => {
            ExitCode::from(dinoscope::train::interrupt::EXIT_INTERRUPTED)
        }
        dinoscope::app::Closed::Failed => ExitCode::FAILURE,
    })
}

#[cfg(not(feature = "app"))]
fn run_app(_: bool, _: Option<PathBuf>, _: u64, _: &[String]) -> Result<ExitCode, String> {
    Err(
        "this build has no window (built without the `app` feature); try `dinoscope train` \
         or `dinoscope --help`"
            .into(),
    )
}

/// Whether `--screenshot`'s picture and the JSON beside it can be written without replacing
/// anything: checked before the window opens and the run trains.
#[cfg(feature = "app")]
fn screenshot_free(shot: &std::path::Path) -> Result<(), String> {
    if shot
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        return Err(format!(
            "--screenshot {}: the picture is a PNG, and its notes go beside it as .json: \
             name a .png",
            shot.display()
        ));
    }
    if shot.file_name().and_then(|n| n.to_str()).is_none() {
        return Err(format!(
            "--screenshot {}: name the picture with a UTF-8 file name",
            shot.display()
        ));
    }
    for p in [shot.to_path_buf(), shot.with_extension("json")] {
        if p.exists() || p.is_symlink() {
            return Err(format!(
                "--screenshot {}: {} exists, and the screenshot does not replace it: remove \
                 it or name another file",
                shot.display(),
                p.display()
            ));
        }
    }
    let dir = match shot.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "--screenshot {}: {} is not a folder",
            shot.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// Success, once a benchmark's rows are written to `--json`'s file where one was given.
fn written(
    rows: &[dinoscope::bench::Row],
    json: Option<&std::path::Path>,
) -> Result<ExitCode, String> {
    if let Some(j) = json {
        dinoscope::bench::write_json(j, rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `dinoscope bench …`: runs one benchmark and writes its rows as JSON where asked.
fn bench(cli: &Cli, what: &BenchWhat) -> Result<ExitCode, String> {
    let (json, kind) = match what {
        BenchWhat::Vit { json, .. } => (json, "vit"),
        BenchWhat::Train { json, .. } => (json, "train"),
        BenchWhat::Loader { json, .. } => (json, "loader"),
        BenchWhat::Kernels { json, .. } => (json, "kernels"),
    };
    if let Some(j) = json {
        dinoscope::bench::check_json_target(j, kind)?;
    }
    match what {
        BenchWhat::Vit {
            config,
            runs,
            reps,
            profile,
            json,
            precision,
        } => open_gpu(cli).and_then(|gpu| {
            let cfg = if std::path::Path::new(config).is_file() {
                dinoscope::model::config::VitConfig::load(std::path::Path::new(config))
            } else {
                dinoscope::model::config::VitConfig::preset(config)
            }
            .map_err(|e| e.to_string())?;
            let mut parsed = Vec::new();
            for r in runs {
                let bad = || format!("--runs: '{r}' is not SIZExBATCH (e.g. 224x64)");
                let (s, b) = r.split_once('x').ok_or_else(bad)?;
                let (size, batch): (usize, usize) = (
                    s.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if size < cfg.patch || batch == 0 {
                    return Err(format!(
                        "--runs: '{r}': the size must be at least the patch ({}) and the \
                         batch at least 1",
                        cfg.patch
                    ));
                }
                parsed.push((size, batch));
            }
            let mut rows = dinoscope::bench::vit(
                &gpu,
                &cfg,
                &parsed,
                (*reps).max(1),
                precision.dtype(),
                *profile,
            )
            .map_err(|e| e.to_string())?;
            rows.iter_mut()
                .for_each(|r| r.config = Some(config.clone()));
            written(&rows, json.as_deref())
        }),
        BenchWhat::Train {
            config,
            data,
            steps,
            batch,
            checkpoint,
            precision,
            json,
            profile,
        } => open_gpu(cli).and_then(|gpu| {
            let cfg = dinoscope::train::config::TrainConfig::load(config)?.with_overrides(
                *batch,
                checkpoint.as_deref(),
                precision.as_deref(),
            )?;
            let mut rows = dinoscope::bench::train(&gpu, &cfg, data.as_deref(), *steps, *profile)?;
            rows.iter_mut()
                .for_each(|r| r.config = Some(config.clone()));
            written(&rows, json.as_deref())
        }),
        BenchWhat::Loader {
            config,
            data,
            workers,
            batches,
            json,
        } => dinoscope::train::config::TrainConfig::load(config).and_then(|mut cfg| {
            if let Some(w) = workers {
                cfg.workers = *w;
            }
            let rows = dinoscope::bench::loader(&cfg, data.as_deref(), *batches)?;
            written(&rows, json.as_deref())
        }),
        BenchWhat::Kernels {
            reps,
            quick,
            general,
            tiles,
            json,
        } => open_gpu(cli).and_then(|gpu| {
            let opts = dinoscope::bench::KernelOpts {
                quick: *quick,
                general: *general,
                tiles: *tiles,
            };
            let rows = dinoscope::bench::kernels(&gpu, *reps, opts).map_err(|e| e.to_string())?;
            written(&rows, json.as_deref())
        }),
    }
}

/// Runs the command `cli` names (the app without one).
pub(super) fn dispatch(cli: &Cli) -> Result<ExitCode, String> {
    match &cli.command {
        None => run_app(false, None, 0, &[]),
        Some(Command::App {
            reset,
            screenshot,
            after_steps,
            set,
        }) => run_app(*reset, screenshot.clone(), *after_steps, set),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            // Written whole, or an error: the generator panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "dinoscope", &mut script);
            use std::io::Write as _;
            if let Err(e) = std::io::stdout().write_all(&script) {
                dinoscope::io::stdout_failed(e);
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Info) => open_gpu(cli).map(|gpu| {
            dinoscope::say!("{}", gpu.describe().trim_end());
            ExitCode::SUCCESS
        }),
        Some(Command::Selftest {
            fixtures,
            fixtures_only,
            only,
            skip,
            list,
        }) => {
            let filter = dinoscope::selftest::CaseFilter {
                only: only.clone(),
                skip: skip.clone(),
            };
            open_gpu(cli).and_then(|gpu| {
                commands::selftest::run(&gpu, fixtures.as_ref(), *fixtures_only, &filter, *list)
            })
        }
        Some(Command::Train {
            config,
            data,
            out,
            resume,
            stop_after,
            overwrite,
            steps,
            time_limit,
        }) => open_gpu(cli).and_then(|gpu| {
            commands::train(
                &gpu,
                config.as_deref(),
                data.as_deref(),
                out.as_deref(),
                (*resume, *overwrite),
                (*stop_after, *steps, *time_limit),
                (cli.backend.as_deref(), cli.adapter.as_deref()),
            )
        }),
        Some(Command::Knn {
            weights,
            revision,
            config,
            train,
            test,
            size,
            k,
            precision,
        }) => dinoscope::hub::resolve_weights(weights, revision.as_deref()).and_then(|w| {
            let gpu = open_gpu(cli)?;
            let model = (w.as_path(), config.as_deref(), precision.dtype());
            commands::knn(&gpu, model, train, test, *size, *k)
        }),
        Some(Command::Embed {
            weights,
            revision,
            config,
            images,
            output,
            overwrite,
            size,
            batch,
            precision,
        }) => dinoscope::hub::resolve_weights(weights, revision.as_deref()).and_then(|w| {
            let gpu = open_gpu(cli)?;
            let model = (w.as_path(), config.as_deref(), precision.dtype());
            commands::embed(&gpu, model, images, (output, *overwrite), *size, *batch)
        }),
        Some(Command::Attention {
            weights,
            revision,
            config,
            image,
            output,
            overwrite,
            layer,
            size,
            threshold,
            precision,
        }) => dinoscope::hub::resolve_weights(weights, revision.as_deref()).and_then(|w| {
            let gpu = open_gpu(cli)?;
            commands::attention(
                &gpu,
                (w.as_path(), config.as_deref(), precision.dtype()),
                image,
                (output, *overwrite),
                *layer,
                *size,
                *threshold,
            )
        }),
        Some(Command::Tune {
            config,
            batch,
            precision,
            reps,
        }) => open_gpu(cli)
            .and_then(|gpu| commands::tune(&gpu, config, (*batch, precision.as_deref()), *reps)),
        Some(Command::Export {
            run,
            to,
            output,
            overwrite,
        }) => commands::export(run, to, output.as_deref(), *overwrite),
        Some(Command::Plan {
            config,
            batch,
            checkpoint,
            precision,
            memory,
        }) => open_gpu(cli).and_then(|gpu| {
            let cfg = dinoscope::train::config::TrainConfig::load(config)?.with_overrides(
                *batch,
                checkpoint.as_deref(),
                precision.as_deref(),
            )?;
            cfg.check_batch_memory()
                .map_err(|e| format!("{config}: {e}"))?;
            commands::plan(&gpu, &cfg, memory.as_deref())
        }),
        Some(Command::Bench { what }) => bench(cli, what),
    }
}
