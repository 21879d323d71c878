//! The tools: `bench loader` and `tune`.

use super::*;

#[test]
fn bench_loader_times_the_loader_and_names_a_bad_data_path() {
    let json = tmp("bench_loader.json");
    let _ = std::fs::remove_file(&json);
    let out = dinoscope(&[
        "bench",
        "loader",
        "--config",
        "debug",
        "--workers",
        "2",
        "--batches",
        "3",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 thread:") && text.contains("2 worker threads:"),
        "{text}"
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["unit"], "img/s");
        assert!(r["rate"].as_f64().expect("rate") > 0.0, "{r}");
    }

    let missing = tmp("no_such_images");
    let out = dinoscope(&[
        "bench",
        "loader",
        "--data",
        missing.to_str().expect("utf-8 path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no_such_images"), "{err}");
}

#[test]
fn tune_keeps_what_it_measured_when_stopped_part_way() {
    use std::io::BufRead;
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("tune_stopped");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["tune", "--config", "debug", "--reps", "1"])
        .env("DINOSCOPE_CACHE_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run dinoscope");
    // The event waited for: the first tuned product's line (a row of the table starts with its
    // dims); the process is stopped there, long before the last of the debug step's products.
    let stdout = child.stdout.take().expect("stdout");
    let first = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with(|c: char| c.is_ascii_digit()));
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.is_some(), "tune printed no product");
    let cache = std::fs::read_dir(&dir)
        .expect("the cache folder, written before the first product was printed")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ron"))
        .expect("the cache file");
    let text = std::fs::read_to_string(&cache).expect("cache");
    let parsed: dinoscope::tune::TuneCache = ron::from_str(&text).expect("a whole cache");
    assert!(!parsed.plans.is_empty(), "{text}");
    for plan in parsed.plans.values() {
        assert!(
            dinoscope::kernels::matmul::Plan::parse(plan).is_some(),
            "{plan}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bench kernels --quick` runs every row it lists and writes each with a positive time and
/// rate: the f32 products, the f16 ones where the adapter stores f16 (ViT-S/14's batch-1
/// linears on the untuned default among them), the memory-bound kernels and attention.
#[test]
fn bench_kernels_writes_every_row_with_a_time() {
    let Some(gpu) = common::gpu() else { return };
    let json = tmp("bench_kernels.json");
    let _ = std::fs::remove_file(&json);
    let path = json.to_str().expect("utf-8 path");
    let out = dinoscope(&["bench", "kernels", "--quick", "--reps", "1", "--json", path]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    for r in &rows {
        let (s, rate) = (r["seconds"].as_f64(), r["rate"].as_f64());
        assert!(
            s.is_some_and(|s| s > 0.0) && rate.is_some_and(|r| r > 0.0),
            "{r}"
        );
    }
    let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
    assert!(
        has("matmul 1024x1024x1024") && has("layernorm") && has("attention fwd"),
        "{names:?}"
    );
    if gpu.features.contains(wgpu::Features::SHADER_F16) {
        for n in [1152, 1536, 384] {
            let k = if n == 384 { 1536 } else { 384 };
            let default = format!("matmul f16 257x{n}x{k} tb (");
            assert!(
                names
                    .iter()
                    .any(|r| r.starts_with(&default) && r.ends_with(", default)")),
                "{names:?}"
            );
        }
    }
    let _ = std::fs::remove_file(&json);
}
