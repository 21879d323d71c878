//! Shared test helpers: one GPU per test binary, and the rule that CI never skips GPU tests.

#![allow(dead_code)]

use dinoscope::gpu::{AdapterChoice, Gpu};
use std::sync::OnceLock;

/// The test GPU, or `None` (with a note) when no adapter exists outside CI.
/// With CI=true a missing adapter fails the test instead.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    let g = GPU.get_or_init(|| match Gpu::new_blocking(&AdapterChoice::from_env()) {
        Ok(mut g) => {
            eprintln!("test adapter: {} ({:?})", g.info.name, g.info.backend);
            // Where CI's adapter has them, the subgroup kernels and the timed profiles must
            // run: a driver or wgpu update that lost a feature fails instead of skipping them.
            for (var, feature, what) in [
                (
                    "DINOSCOPE_EXPECT_SUBGROUPS",
                    wgpu::Features::SUBGROUP,
                    "SUBGROUP",
                ),
                (
                    "DINOSCOPE_EXPECT_TIMESTAMPS",
                    wgpu::Features::TIMESTAMP_QUERY,
                    "TIMESTAMP_QUERY",
                ),
            ] {
                assert!(
                    std::env::var_os(var).is_none() || g.features.contains(feature),
                    "{var} is set, but {} has no {what}",
                    g.info.name
                );
            }
            // As the CLI and the app do; a failure leaves coop_side() None, which the coop
            // tests report (and fail on where DINOSCOPE_EXPECT_COOP is set).
            if let Err(e) = dinoscope::kernels::matmul::probe_coop(&mut g) {
                eprintln!("{e}");
            }
            Some(g)
        }
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("CI=true but no GPU adapter: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    });
    g.as_ref()
}

/// Whether `gpu` stores f16 (SHADER_F16), where the f16 tests run. Without it they say so and
/// pass, unless `DINOSCOPE_EXPECT_F16` is set (CI's lavapipe has the feature): then a driver or
/// wgpu update that lost it fails them instead of leaving them empty.
pub fn f16(gpu: &Gpu, test: &str) -> bool {
    if gpu.features.contains(wgpu::Features::SHADER_F16) {
        return true;
    }
    assert!(
        std::env::var_os("DINOSCOPE_EXPECT_F16").is_none(),
        "{test}: DINOSCOPE_EXPECT_F16 is set, but {} has no SHADER_F16",
        gpu.info.name
    );
    eprintln!("{test}: skipped, no SHADER_F16 on {}", gpu.info.name);
    false
}

/// A command running `program` with a tuning cache of the test run's own (`DINOSCOPE_CACHE_DIR`):
/// the tests neither take the plans `dinoscope tune` cached on this machine nor write there.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.env("DINOSCOPE_CACHE_DIR", test_cache());
    c
}

/// The tests' tuning cache folder, under the target folder (`cargo clean` empties it); the
/// cache's writes are whole files, so test processes may share it.
pub fn test_cache() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tune-cache")
}

/// The bundled golden fixtures.
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Tolerance tiers: `|got − want| ≤ atol + rtol·|want|`.
pub struct Tol {
    pub atol: f32,
    pub rtol: f32,
}

/// Finite differences of f32 functions evaluated in f64 inside.
pub const FD: Tol = Tol {
    atol: 2e-3,
    rtol: 2e-3,
};

/// Asserts closeness and prints the first mismatches.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: &Tol) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut bad = Vec::new();
    let mut max = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        max = max.max(d);
        if (d.is_nan() || d > tol.atol + tol.rtol * w.abs()) && bad.len() < 5 {
            bad.push(format!("[{i}] got {g} want {w}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: max diff {max:e}; first mismatches: {}",
        bad.join(", ")
    );
}

/// A scratch folder for one test, emptied when made and removed when dropped; a test that
/// fails leaves it for a look.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    /// `dinoscope-{name}-{pid}` under the system's temporary folder.
    pub fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("dinoscope-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch folder");
        Scratch(d)
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::PathBuf;
    fn deref(&self) -> &std::path::PathBuf {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
