//! `dinoscope selftest`: the kernel checks, the tuned choices and the golden fixture cases, and
//! where the fixtures come from when none are given.

use dinoscope::gpu::Gpu;
use dinoscope::selftest::{
    kernel_checks, list_fixtures, run_fixtures_filtered, CaseFilter, CaseResult, Exec, Status,
};
use std::path::PathBuf;
use std::process::ExitCode;

/// One embedded file of a fixture model folder: (relative path, bytes).
macro_rules! embedded_model {
    ($model:literal, $file:literal) => {
        (
            concat!($model, "/", $file),
            include_bytes!(concat!("../../tests/fixtures/", $model, "/", $file)),
        )
    };
}

/// The golden fixtures, built into the binary so `selftest` works after `cargo install`
/// (where neither the sources nor a folder next to the binary exist).
const EMBEDDED_FIXTURES: &[(&str, &[u8])] = &[
    (
        "manifest.json",
        include_bytes!("../../tests/fixtures/manifest.json"),
    ),
    (
        "ops.safetensors",
        include_bytes!("../../tests/fixtures/ops.safetensors"),
    ),
    (
        "losses.safetensors",
        include_bytes!("../../tests/fixtures/losses.safetensors"),
    ),
    embedded_model!("tiny_dinov2", "config.json"),
    embedded_model!("tiny_dinov2", "model.safetensors"),
    embedded_model!("tiny_dinov2", "io.safetensors"),
    embedded_model!("tiny_dinov2", "grads.safetensors"),
    embedded_model!("tiny_dinov2_reg", "config.json"),
    embedded_model!("tiny_dinov2_reg", "model.safetensors"),
    embedded_model!("tiny_dinov2_reg", "io.safetensors"),
    embedded_model!("tiny_dinov2_reg", "grads.safetensors"),
    embedded_model!("tiny_dinov3", "config.json"),
    embedded_model!("tiny_dinov3", "model.safetensors"),
    embedded_model!("tiny_dinov3", "io.safetensors"),
    embedded_model!("tiny_dinov3", "grads.safetensors"),
];

/// The fixtures shipped with the crate: tests/fixtures next to the sources, a `fixtures`
/// folder next to the binary, or else the copy built into the binary, written out once per
/// version under the temporary folder (`DINOSCOPE_EMBEDDED_FIXTURES=1` takes it always).
fn bundled_fixtures() -> Result<PathBuf, String> {
    let embedded_only = std::env::var_os("DINOSCOPE_EMBEDDED_FIXTURES").is_some();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("fixtures")));
    if !embedded_only {
        if let Some(found) = [Some(src), beside]
            .into_iter()
            .flatten()
            .find(|p| p.is_dir())
        {
            return Ok(found);
        }
    }
    let dir =
        std::env::temp_dir().join(format!("dinoscope-fixtures-{}", env!("CARGO_PKG_VERSION")));
    for (name, bytes) in EMBEDDED_FIXTURES {
        let path = dir.join(name);
        // The bytes, not only the size: a copy left by another build of this version (other
        // fixtures of the same shapes) is written over.
        let same = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64)
            && std::fs::read(&path).is_ok_and(|b| b == *bytes);
        if same {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        dinoscope::io::write_atomic(&path, bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(dir)
}

/// `dinoscope selftest`: every kernel check, the tuned choices and the fixture models against
/// their golden tensors; fails if any case fails.
pub fn run(
    gpu: &Gpu,
    fixtures: Option<&PathBuf>,
    fixtures_only: bool,
    filter: &CaseFilter,
    list: bool,
) -> Result<ExitCode, String> {
    let dir = match fixtures {
        Some(d) => d.clone(),
        None => bundled_fixtures()?,
    };
    // A wrong folder is said at once, not after every kernel check.
    let manifest = dir.join("manifest.json");
    if dir.is_dir() && !manifest.is_file() {
        return Err(format!(
            "{}: no manifest.json; --fixtures takes a folder of golden fixtures (like \
             tests/fixtures)",
            dir.display()
        ));
    }
    if list {
        return list_cases(gpu, &dir, fixtures_only, filter);
    }
    dinoscope::say!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    dinoscope::say!("fixtures: {}\n", dir.display());
    dinoscope::say!(
        "{:<28} {:<11} {:>10} {:>10}",
        "case",
        "result",
        "max err",
        "tolerance"
    );
    let mut failed = 0;
    let mut n = 0;
    let mut unsupported = 0;
    let mut print = |r: CaseResult| {
        dinoscope::say!("{}", r.row());
        n += 1;
        failed += r.failed() as usize;
        unsupported += matches!(r.status, Status::Unsupported(_)) as usize;
    };
    if !fixtures_only {
        for c in kernel_checks() {
            if filter.runs(c.name) {
                print((c.run)(gpu));
            }
        }
        // The choices `dinoscope tune` cached for this adapter, each against the twin.
        let (count, fails) = if filter.runs("kernel.tuned") {
            dinoscope::tune::verify_cached(gpu)
        } else {
            (0, Vec::new())
        };
        if count > 0 {
            print(CaseResult {
                name: format!("kernel.tuned ({count} choices)"),
                status: if fails.is_empty() {
                    Status::Pass
                } else {
                    Status::Fail(fails.join("; "))
                },
                max_err: 0.0,
                tol: 0.0,
                compared: count,
            });
        }
    }
    let rows = run_fixtures_filtered(&Exec::Gpu(gpu), &dir, filter).map_err(|e| e.to_string())?;
    let fixture_rows = rows.len();
    let fixture_unsupported = rows
        .iter()
        .filter(|r| matches!(r.status, Status::Unsupported(_)))
        .count();
    for r in rows {
        print(r);
    }
    if n == 0 {
        return Err(no_case_matches(filter, &dir));
    }
    dinoscope::say!(
        "\n{} passed, {failed} failed, {unsupported} unsupported",
        n - failed - unsupported
    );
    if fixture_rows > 0 && fixture_rows == fixture_unsupported {
        return Err(format!(
            "{}: none of its cases is one this build checks, so nothing of it was checked",
            dir.display()
        ));
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn no_case_matches(filter: &CaseFilter, dir: &std::path::Path) -> String {
    if filter.only.is_empty() && filter.skip.is_empty() {
        return format!(
            "{}: its files hold no selftest case (ops and losses files hold tensors named \
             case.tensor; model folders a config.json)",
            dir.display()
        );
    }
    format!(
        "no selftest case matches --only {:?} --skip {:?} (`dinoscope selftest --list` lists them)",
        filter.only, filter.skip
    )
}

/// `selftest --list`: the names of the cases a run with the same options would run, in its
/// order, one a line, without running them.
fn list_cases(
    gpu: &Gpu,
    dir: &std::path::Path,
    fixtures_only: bool,
    filter: &CaseFilter,
) -> Result<ExitCode, String> {
    let mut names: Vec<String> = Vec::new();
    if !fixtures_only {
        names.extend(
            kernel_checks()
                .iter()
                .filter(|c| filter.runs(c.name))
                .map(|c| c.name.to_string()),
        );
        let tuned = gpu.choices().len();
        if tuned > 0 && filter.runs("kernel.tuned") {
            names.push(format!("kernel.tuned ({tuned} choices)"));
        }
    }
    names.extend(list_fixtures(&Exec::Gpu(gpu), dir, filter).map_err(|e| e.to_string())?);
    if names.is_empty() {
        return Err(no_case_matches(filter, dir));
    }
    for n in names {
        dinoscope::say!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}
