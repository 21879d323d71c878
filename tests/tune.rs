//! The tuner: matmul candidates and attention variants are checked and timed, winners cached
//! per adapter and loaded back, a cache for another adapter is ignored, and tuned plans give
//! the twin's results.

mod common;

use dinoscope::gpu::{AdapterChoice, DType, Gpu, Recorder};
use dinoscope::kernels::attention_plan;
use dinoscope::kernels::matmul::{
    matmul, Epilogue, MatmulDims, Plan, V4Tile, LARGE_COOP, LARGE_TILE, SPLIT_F16,
};
use dinoscope::train::config::TrainConfig;

#[test]
fn tune_caches_winners_per_adapter_and_they_load_back() {
    if common::gpu().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("dinoscope-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // This test binary has one test, so setting the variable races with nothing.
    std::env::set_var("DINOSCOPE_CACHE_DIR", &dir);
    let gpu = Gpu::new_blocking(&AdapterChoice::from_env()).expect("adapter");

    // The products of the debug step, from a dry run: the linear layers' shapes are there.
    let cfg = TrainConfig::preset("debug").expect("preset");
    let products = dinoscope::tune::products(&gpu, &cfg).expect("products");
    assert!(products.len() >= 6, "{products:?}");
    let side = cfg.augment.global_size / cfg.model.patch;
    let rows = 2 * cfg.batch_size * (1 + side * side);
    assert!(
        products.iter().any(|(d, t)| *t == DType::F32
            && d.m == rows
            && d.n == 3 * 64
            && d.k == 64
            && d.trans_b),
        "no qkv product among {products:?}"
    );
    // A mixed-precision step's products have f16 operands: they are tuned apart.
    let f16 = common::f16(&gpu, "tune f16 products");
    if f16 {
        let mut mixed = cfg.clone();
        mixed.precision = dinoscope::train::config::Precision::Mixed;
        let p16 = dinoscope::tune::products(&gpu, &mixed).expect("products");
        assert!(p16.iter().any(|(_, t)| *t == DType::F16), "{p16:?}");
    }

    // Tune two products: one small enough for the 64 tile, one with a long K (split K); and
    // the first on f16 operands where the adapter has them.
    let mut dims = vec![
        (MatmulDims::new(68, 132, 36).tb(), DType::F32),
        (MatmulDims::new(132, 68, 2064), DType::F32),
    ];
    if f16 {
        dims.push((MatmulDims::new(68, 132, 36).tb(), DType::F16));
    }
    let mut seen = 0;
    let tuned = dinoscope::tune::tune(&gpu, &dims, 1, |_| {
        seen += 1;
        std::ops::ControlFlow::Continue(())
    })
    .expect("tune");
    assert_eq!((tuned.len(), seen), (dims.len(), dims.len()));
    assert!(
        Plan::candidates(&dims[1].0).len() >= 5,
        "split K candidates"
    );
    for t in &tuned {
        // The "default" column is the plan an untuned device runs, timed, not a stand-in.
        assert_eq!(
            t.default.0,
            Plan::untuned(&gpu, &t.dims, t.dtype),
            "{:?}",
            t.dims
        );
        assert!(t.default.1 > 0.0 && t.best.1 > 0.0, "untimed: {:?}", t.dims);
        assert_eq!(gpu.choice(&t.dims.key_for(t.dtype)), Some(t.best.0.name()));
    }
    // The debug step's attention passes: each variant that runs here is checked and timed.
    let calls = dinoscope::tune::attention_calls(&gpu, &cfg).expect("attention calls");
    for pass in ["forward", "backward"] {
        assert!(calls.iter().any(|(p, _, _)| p == pass), "{pass}: {calls:?}");
    }
    let attn =
        dinoscope::tune::tune_attention(&gpu, &calls, 1, |_| std::ops::ControlFlow::Continue(()))
            .expect("tune attention");
    assert_eq!(attn.len(), calls.len());
    for t in &attn {
        assert!(
            t.default.1 > 0.0 && t.best.1 > 0.0,
            "untimed: {}",
            t.default.0
        );
    }
    let path = dinoscope::tune::save(&gpu).expect("save");
    assert!(path.starts_with(&dir));

    // A fresh device on the same adapter loads them; products then run the tuned plans, and
    // attention the tuned kernels.
    let fresh = Gpu::new_blocking(&AdapterChoice::from_env()).expect("adapter");
    assert_eq!(
        dinoscope::tune::load(&fresh).expect("load"),
        dims.len() + calls.len()
    );
    for (t, (d, dtype)) in tuned.iter().zip(&dims) {
        assert_eq!(Plan::choose(&fresh, d, *dtype).name(), t.best.0.name());
    }
    for t in &attn {
        let (pass, d, dtype) = &t.call;
        let rec = Recorder::new(&fresh);
        let chosen = match pass.as_str() {
            "forward" => attention_plan::forward_for(&rec, d, *dtype).name(),
            _ => attention_plan::backward_for(&rec, d, *dtype).name(),
        };
        assert_eq!(chosen, t.best.0, "{pass}");
    }
    // A forced variant wins over the tuned one; one the device cannot run gives the default.
    let (_, d, dtype) = &attn[0].call;
    let key = attention_plan::key("forward", d, *dtype);
    let mut rec = Recorder::new(&fresh);
    rec.force(attention_plan::FORWARD, Some("one"));
    assert_eq!(attention_plan::forward_for(&rec, d, *dtype).name(), "one");
    rec.force(attention_plan::FORWARD, None);
    fresh.set_choice(&key, "pairs");
    rec.set_subgroups(false);
    assert_eq!(
        attention_plan::forward_for(&rec, d, *dtype),
        attention_plan::Forward::default_for(&rec)
    );
    // An f16 product with no choice of its own takes the f32 product's, unless the adapter has
    // cooperative matrices (their kernel is the f16 default).
    let untuned16 = dims[1].0;
    let want16 = match Plan::untuned(&fresh, &untuned16, DType::F16) {
        p if p.is_coop() => p.name(),
        _ => tuned[1].best.0.name(),
    };
    assert_eq!(Plan::choose(&fresh, &untuned16, DType::F16).name(), want16);
    let d = dims[1].0;
    let a = dinoscope::selftest::checks_random(d.m * d.k, 5, -1.0, 1.0);
    let b = dinoscope::selftest::checks_random(d.k * d.n, 6, -1.0, 1.0);
    let want = dinoscope::cpu::matmul::matmul(&a, &b, d);
    let (ta, tb) = (fresh.upload(&a, &[d.m, d.k]), fresh.upload(&b, &[d.k, d.n]));
    let c = fresh.empty(&[d.m, d.n]);
    let mut rec = Recorder::new(&fresh);
    matmul(&mut rec, &c, &ta, &tb, d, 1.0, false, Epilogue::None);
    rec.finish().expect("submit");
    let got = fresh.read(&c).expect("read");
    common::assert_close(
        "tuned product",
        &got,
        &want,
        &common::Tol {
            atol: 2e-4,
            rtol: 1e-5,
        },
    );

    // The large-product tile: timed once (forced on a CPU driver, which skips it by default),
    // cached, then loaded back without timing; selftest's check of cached choices takes it.
    std::env::set_var("DINOSCOPE_CALIBRATE", "1");
    let (tile, times) = dinoscope::tune::calibrate(&fresh)
        .expect("calibrate")
        .expect("timed");
    // Every tile passes its check here, so each was timed (one that failed would be left out).
    assert_eq!(times.len(), V4Tile::ALL.len(), "{times:?}");
    // Cached as a ranking that starts with the fastest tile and ends at the 64×64 one.
    let cached = fresh.choice(LARGE_TILE).expect("cached");
    assert_eq!(cached.split(',').next(), Some(tile.name()), "{cached}");
    assert!(cached.ends_with(V4Tile::T64.name()), "{cached}");
    let ranked = dinoscope::kernels::matmul::large_tiles(&cached).expect("readable");
    assert_eq!(ranked.first().copied().unwrap_or(V4Tile::T64), tile);
    // The cooperative tile for large f16 products: timed where the device runs both tiles and
    // f16 products take them by default (the Mesa 26.1 root of `.ci/coop_root.sh`).
    let coop = dinoscope::tune::calibrate_coop(&fresh).expect("calibrate coop");
    let both = Plan::coop_plans(&fresh).len() == 2 && fresh.coop_by_default();
    assert_eq!(coop.is_some(), both);
    if let Some((plan, times)) = &coop {
        assert_eq!(times.len(), 2);
        assert_eq!(fresh.choice(LARGE_COOP), Some(plan.name()));
        // An untuned f16 product with 512 wide tiles takes the chosen tile; a small one keeps
        // the square tile.
        let side = fresh.coop_side().expect("cooperative matrices") as usize;
        let big = MatmulDims::new(16 * side * 32, 8 * side * 16, 64);
        let small = MatmulDims::new(16 * side * 4, 8 * side * 4, 64);
        assert_eq!(big.coop_tiles(side as u32, true), 512);
        assert_eq!(Plan::untuned(&fresh, &big, DType::F16), *plan);
        for (choice, want) in [("coop-wide", Plan::CoopWide), ("coop", Plan::Coop)] {
            fresh.set_choice(LARGE_COOP, choice);
            assert_eq!(Plan::untuned(&fresh, &big, DType::F16), want);
            assert_eq!(Plan::untuned(&fresh, &small, DType::F16), Plan::Coop);
        }
        fresh.set_choice(LARGE_COOP, &plan.name());
    }
    // Which kernel splits K for long-K f16 products over few tiles (the weight gradients):
    // timed where f16 products take cooperative matrices by default, each split checked first.
    let split = dinoscope::tune::calibrate_split(&fresh).expect("calibrate split");
    assert_eq!(split.is_some(), fresh.coop_by_default());
    if let Some((choice, times)) = &split {
        assert_eq!(times.len(), 2, "{times:?}");
        assert_eq!(fresh.choice(SPLIT_F16).as_ref(), Some(choice));
        let side = fresh.coop_side().expect("cooperative matrices");
        let grad = MatmulDims::new(64, 32, 8192).ta();
        for (choice, coop) in [("coop", true), ("vec4", false)] {
            fresh.set_choice(SPLIT_F16, choice);
            let plan = Plan::untuned(&fresh, &grad, DType::F16);
            let want = if coop {
                Plan::CoopSplit {
                    splits: Plan::coop_splits(&grad, side),
                }
            } else {
                Plan::for_device(&grad, fresh.cpu_driver())
            };
            assert_eq!(plan, want, "{choice}");
            assert!(plan.name().contains("split"), "{plan:?}");
        }
        fresh.set_choice(SPLIT_F16, choice);
    }
    // The attention variants calls take without a tuned choice: for f16 the default or the one
    // on cooperative matrices, for f32 in the GPUs' layout the fastest split of a token (the
    // device's own layout here: the CPU drivers' on lavapipe, where f32 calls keep the
    // default; the GPUs' layout follows below).
    let calibrated = dinoscope::tune::calibrate_attention(&fresh).expect("calibrate attention");
    let candidates = |dtype: DType, cpu: bool| {
        let mut rec = Recorder::new(&fresh);
        rec.set_cpu_layouts(cpu);
        let d = dinoscope::kernels::attention::AttnDims::new(1, 6, 65, 64);
        [
            attention_plan::Forward::calibration_candidates(&rec, &d, dtype).len(),
            attention_plan::Backward::calibration_candidates(&rec, &d, dtype).len(),
        ]
    };
    let cpu = fresh.cpu_driver();
    let mut want = candidates(DType::F32, cpu)
        .iter()
        .filter(|&&n| n > 1)
        .count();
    if fresh.coop_by_default() {
        want += 2;
    }
    assert_eq!(calibrated.len(), want, "{calibrated:?}");
    for (dtype, pass, variant, times) in &calibrated {
        let n = candidates(*dtype, cpu)[usize::from(*pass == "backward")];
        assert_eq!(times.len(), n, "{pass}");
        let key = attention_plan::calibrated_key(pass, *dtype);
        assert_eq!(fresh.choice(key).as_deref(), Some(*variant));
    }
    if fresh.coop_by_default() {
        use attention_plan::{backward_for, forward_for, Backward, Forward};
        let d = dinoscope::kernels::attention::AttnDims::new(3, 2, 50, 32);
        let rec = Recorder::new(&fresh);
        let (fd, bd) = (Forward::default_for(&rec), Backward::default_for(&rec));
        for coop in [true, false] {
            let f = if coop { Forward::Coop } else { fd };
            let b = if coop { Backward::Coop } else { bd };
            fresh.set_choice(attention_plan::F16_FORWARD, f.name());
            fresh.set_choice(attention_plan::F16_BACKWARD, b.name());
            assert_eq!(forward_for(&rec, &d, DType::F16), f);
            assert_eq!(backward_for(&rec, &d, DType::F16), b);
            assert_eq!(forward_for(&rec, &d, DType::F32), fd);
            assert_eq!(backward_for(&rec, &d, DType::F32), bd);
        }
        for (dtype, pass, variant, _) in &calibrated {
            fresh.set_choice(attention_plan::calibrated_key(pass, *dtype), variant);
        }
    }
    let again = Gpu::new_blocking(&AdapterChoice::from_env()).expect("adapter");
    dinoscope::tune::load(&again).expect("load");
    let (cached, none) = dinoscope::tune::calibrate(&again)
        .expect("calibrate")
        .expect("cached");
    assert_eq!((cached, none.len()), (tile, 0));
    let again_attention = dinoscope::tune::calibrate_attention(&again).expect("calibrate");
    assert_eq!(again_attention.len(), calibrated.len());
    for ((t, pass, variant, none), (t0, p0, v0, _)) in again_attention.iter().zip(&calibrated) {
        assert_eq!((t, pass, variant, none.len()), (t0, p0, v0, 0));
    }
    if let Some((choice, _)) = &split {
        let (again_choice, none) = dinoscope::tune::calibrate_split(&again)
            .expect("calibrate split")
            .expect("cached");
        assert_eq!((&again_choice, none.len()), (choice, 0));
    }
    if let Some((plan, _)) = &coop {
        let (again_plan, none) = dinoscope::tune::calibrate_coop(&again)
            .expect("calibrate coop")
            .expect("cached");
        assert_eq!((again_plan, none.len()), (*plan, 0));
    }
    std::env::set_var("DINOSCOPE_CALIBRATE", "0");
    assert!(dinoscope::tune::calibrate(&again).expect("off").is_none());
    assert!(dinoscope::tune::calibrate_coop(&again)
        .expect("off")
        .is_none());
    assert!(dinoscope::tune::calibrate_split(&again)
        .expect("off")
        .is_none());
    std::env::remove_var("DINOSCOPE_CALIBRATE");
    let (count, fails) = dinoscope::tune::verify_cached(&again);
    assert_eq!(
        (count, fails),
        (
            dims.len()
                + calls.len()
                + 1
                + usize::from(coop.is_some())
                + usize::from(split.is_some())
                + calibrated.len(),
            Vec::<String>::new()
        )
    );

    // In the GPUs' layout f32 calls time the GPU variants of each pass, and their choice holds
    // for f32 calls in that layout only (on a GPU the first calibration above already did this,
    // so the cache answers without timing).
    std::env::set_var("DINOSCOPE_CALIBRATE", "1");
    let in_gpu_layout =
        dinoscope::tune::calibrate_attention_in(&again, false).expect("calibrate attention");
    std::env::remove_var("DINOSCOPE_CALIBRATE");
    let f32_passes: Vec<_> = in_gpu_layout.iter().filter(|c| c.0 == DType::F32).collect();
    let gpu_candidates = candidates(DType::F32, false);
    let timed = gpu_candidates.iter().filter(|&&n| n > 1).count();
    assert_eq!(f32_passes.len(), timed, "{in_gpu_layout:?}");
    // The backward always has a second variant (one invocation a token, at least).
    assert!(timed >= 1);
    {
        use attention_plan::{backward_for, forward_for, Backward, Forward};
        let d = dinoscope::kernels::attention::AttnDims::new(3, 2, 50, 32);
        for (_, pass, variant, times) in f32_passes {
            let backward = *pass == "backward";
            let n = if again.cpu_driver() {
                gpu_candidates[usize::from(backward)]
            } else {
                0
            };
            assert_eq!(times.len(), n, "{pass}: {times:?}");
            let mut rec = Recorder::new(&again);
            rec.set_cpu_layouts(false);
            let chosen = match backward {
                false => forward_for(&rec, &d, DType::F32).name(),
                true => backward_for(&rec, &d, DType::F32).name(),
            };
            assert_eq!(chosen, *variant, "{pass}");
            rec.set_cpu_layouts(true);
            assert_eq!(
                forward_for(&rec, &d, DType::F32),
                Forward::default_for(&rec)
            );
            assert_eq!(
                backward_for(&rec, &d, DType::F32),
                Backward::default_for(&rec)
            );
        }
    }

    // While a calibration checks and times kernels a marker file sits beside the cache. A first
    // run leaves none when it ends; one left by a run that died while timing (a driver fault)
    // makes the next runs skip the calibrations, naming the file, until it is deleted.
    std::env::set_var("DINOSCOPE_CALIBRATE", "1");
    let first_dir = dir.join("first run");
    std::env::set_var("DINOSCOPE_CACHE_DIR", &first_dir);
    let first = Gpu::new_blocking(&AdapterChoice::from_env()).expect("adapter");
    let marker = dinoscope::tune::marker_path(&first).expect("a cache folder");
    let lines = dinoscope::tune::calibrate_first_run(&first).expect("calibrations");
    assert!(
        lines.iter().any(|l| l.starts_with("large products take")),
        "{lines:?}"
    );
    assert!(!marker.exists(), "{}", marker.display());
    assert!(dinoscope::tune::cache_path(&first).is_some_and(|p| p.exists()));
    std::fs::write(&marker, "").expect("write");
    let err = dinoscope::tune::calibrate_first_run(&first).expect_err("skipped");
    assert!(err.contains(&marker.display().to_string()), "{err}");
    assert!(marker.exists(), "a skipped run leaves the marker");
    std::fs::remove_file(&marker).expect("remove");
    assert!(dinoscope::tune::calibrate_first_run(&first).is_ok());
    assert!(!marker.exists());
    std::env::set_var("DINOSCOPE_CACHE_DIR", &dir);
    std::env::remove_var("DINOSCOPE_CALIBRATE");

    // A product the cache does not hold takes the plan of one that differs from it in M, N or
    // K alone, by less than half (the iBOT head's rows change every step); others stay untuned.
    let base = MatmulDims::new(200, 64, 96);
    let stored = "v4-128x64-split5";
    fresh.set_choice(&base.key(), stored);
    let near = MatmulDims::new(220, 64, 96);
    assert_ne!(Plan::untuned(&fresh, &near, DType::F32).name(), stored);
    assert_eq!(Plan::choose(&fresh, &near, DType::F32).name(), stored);
    assert_eq!(Plan::choose(&fresh, &near, DType::F32).name(), stored);
    for far in [
        MatmulDims::new(320, 64, 96),
        MatmulDims::new(220, 68, 96),
        MatmulDims::new(200, 64, 96).ta(),
    ] {
        let untuned = Plan::untuned(&fresh, &far, DType::F32);
        assert_eq!(Plan::choose(&fresh, &far, DType::F32), untuned, "{far:?}");
        assert!(fresh.missed_choices().1.contains(&far.key()), "{far:?}");
    }
    assert!(fresh.missed_choices().0 >= 1);
    // Storing a choice makes every key look again.
    let far = MatmulDims::new(320, 64, 96);
    fresh.set_choice(&MatmulDims::new(300, 64, 96).key(), "v4-64-split3");
    assert_eq!(
        Plan::choose(&fresh, &far, DType::F32).name(),
        "v4-64-split3"
    );

    // A cache written for another adapter is ignored; a damaged one is an error naming it.
    let text = std::fs::read_to_string(&path).expect("cache");
    let other = text.replacen("adapter: \"", "adapter: \"another ", 1);
    std::fs::write(&path, other).expect("write");
    assert_eq!(dinoscope::tune::load(&fresh).expect("load"), 0);
    std::fs::write(&path, "not ron").expect("write");
    let err = dinoscope::tune::load(&fresh).expect_err("damaged");
    assert!(
        err.contains("tune-") && err.contains("dinoscope tune"),
        "{err}"
    );
    // Bytes that are not text at all are reported the same way, not taken for no cache.
    std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
    let err = dinoscope::tune::load(&fresh).expect_err("not text");
    assert!(err.contains("not UTF-8"), "{err}");
    // Saving over a damaged cache (a calibration's first result, say) keeps it aside, whole.
    std::fs::write(&path, "(adapter: \"typo\"").expect("write");
    let saved = dinoscope::tune::save(&fresh).expect("saved");
    assert_eq!(saved, path);
    let kept = path.with_extension("ron.damaged");
    assert_eq!(
        std::fs::read_to_string(&kept).expect("kept aside"),
        "(adapter: \"typo\""
    );
    assert!(dinoscope::tune::load(&fresh).expect("the new cache loads") > 0);
    // A second damaged cache is kept beside the first, which stays as it was.
    std::fs::write(&path, "(adapter: \"again\"").expect("write");
    dinoscope::tune::save(&fresh).expect("saved");
    assert_eq!(
        std::fs::read_to_string(path.with_extension("ron.damaged2")).expect("kept aside"),
        "(adapter: \"again\""
    );
    assert_eq!(
        std::fs::read_to_string(&kept).expect("the first stays"),
        "(adapter: \"typo\""
    );
    let _ = std::fs::remove_dir_all(&dir);
}
