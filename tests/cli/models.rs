//! The model commands: attention maps, features, k-NN, DINOv3 weights and f16 storage.

use super::*;

/// A fixture model's config (the sizes differ between fixture sets).
fn fixture_config(model: &str) -> dinoscope::model::config::VitConfig {
    dinoscope::model::config::VitConfig::load(Path::new(&format!(
        "tests/fixtures/{model}/config.json"
    )))
    .expect("config")
}

/// The size of `chelsea.png`'s maps at `--size size` for a model of this patch: its shorter
/// side resized to `size`, both sides cut to whole patches.
fn map_size(patch: usize, size: usize) -> (u32, u32) {
    use dinoscope::data::image::{load_image, preprocess, Resize};
    let photo = load_image(Path::new("assets/images/chelsea.png")).expect("photo");
    let img = preprocess(&photo, Resize::ShorterSide(size), patch).expect("preprocess");
    (img.width as u32, img.height as u32)
}

#[test]
fn attention_writes_maps_of_the_right_size_that_are_not_constant() {
    if common::gpu().is_none() {
        return;
    }
    let out_dir = tmp("attention");
    let out = dinoscope(&[
        "attention",
        "--weights",
        "tests/fixtures/tiny_dinov2_reg/model.safetensors",
        "assets/images/chelsea.png",
        "--size",
        "224",
        "-o",
        out_dir.to_str().expect("utf-8 path"),
    ]);
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    let cfg = fixture_config("tiny_dinov2_reg");
    let (w, h) = map_size(cfg.patch, 224);
    let last = format!("head{}_threshold.png", cfg.heads - 1);
    for name in [
        "input.png",
        "head0.png",
        &last,
        "mean.png",
        "mean_overlay.png",
        "pca.png",
    ] {
        let img = image::open(out_dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .to_rgb8();
        assert_eq!((img.width(), img.height()), (w, h), "{name} size");
        let first = *img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| *p != first), "{name} is constant");
    }
    let heads = image::open(out_dir.join("heads.png"))
        .expect("heads.png")
        .to_rgb8();
    assert!(
        heads.width() as usize * heads.height() as usize >= (w * h) as usize * cfg.heads,
        "the head grid holds every head"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// `attention --overwrite` into the maps of a model with more heads replaces them and removes
/// the heads the new model lacks (they would pass for its own), and nothing else.
#[test]
fn attention_overwrite_leaves_no_stale_head_maps() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("attention_stale");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let weights = "tests/fixtures/tiny_dinov2_reg/model.safetensors";
    let own = fixture_config("tiny_dinov2_reg");
    // First maps of the same weights read with more heads (any divisor of the width splits
    // the same projections), then the model's own maps over them.
    let mut more = own.clone();
    more.heads = (own.heads + 1..=own.dim)
        .find(|h| own.dim.is_multiple_of(*h))
        .expect("a head count above the model's");
    let more_path = dir.join("more_heads.ron");
    std::fs::write(&more_path, more.to_ron().expect("ron")).expect("write");
    let maps = dir.join("maps");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "attention",
            "--weights",
            weights,
            "assets/images/chelsea.png",
        ];
        args.extend_from_slice(&["--size", "56", "-o", maps.to_str().expect("utf-8 path")]);
        args.extend_from_slice(extra);
        let out = dinoscope(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["--config", more_path.to_str().expect("utf-8 path")]);
    let last = more.heads - 1;
    assert!(maps.join(format!("head{last}_threshold.png")).is_file());
    for mine in ["head_notes.png", "head+2.png", "head03.png"] {
        std::fs::write(maps.join(mine), b"mine").expect("write");
    }
    run(&["--overwrite"]);
    let mut expected: Vec<(String, bool)> = vec![
        ("head0.png".into(), true),
        (format!("head{}_threshold.png", own.heads - 1), true),
        (format!("head{}.png", own.heads), false),
        (format!("head{last}_threshold.png"), false),
    ];
    for mine in ["head_notes.png", "head+2.png", "head03.png"] {
        expected.push((mine.into(), true));
    }
    for (name, there) in expected {
        assert_eq!(maps.join(&name).is_file(), there, "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wrong_weights_file_lists_the_tensors() {
    if common::gpu().is_none() {
        return;
    }
    let out = dinoscope(&[
        "attention",
        "--weights",
        "tests/fixtures/tiny_dinov2/model.safetensors",
        "--config",
        "vits14",
        "assets/images/chelsea.png",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("tests/fixtures/tiny_dinov2/model.safetensors"),
        "{err}"
    );
    assert!(
        err.contains("missing") && err.contains("blocks.11.attn.qkv.weight [1152, 384]"),
        "{err}"
    );
    assert!(
        err.contains("pos_embed") && err.contains("[1, 1370, 384]"),
        "{err}"
    );
}

#[test]
fn embed_writes_features_and_skips_unreadable_images() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("embed");
    std::fs::create_dir_all(dir.join("more")).expect("mkdir");
    std::fs::copy("assets/images/coffee.png", dir.join("more/coffee.png")).expect("copy");
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").expect("write");
    // A folder that does not exist yet is made for the output.
    let out_file = dir.join("new folder/feats.safetensors");
    let out = dinoscope(&[
        "embed",
        "--weights",
        "tests/fixtures/tiny_dinov2/model.safetensors",
        "assets/images/chelsea.png",
        "assets/images/astronaut.png",
        dir.to_str().expect("utf-8 path"),
        "--size",
        "56",
        "--batch",
        "2",
        "-o",
        out_file.to_str().expect("utf-8 path"),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success());
    assert!(
        text.contains("broken.png") && text.contains("1 unreadable images skipped"),
        "{text}"
    );
    let bytes = std::fs::read(&out_file).expect("features file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let d = fixture_config("tiny_dinov2").dim;
    for name in ["cls", "mean_patch"] {
        let t = st.tensor(name).expect("tensor");
        assert_eq!(t.shape(), &[3, d]);
        let v: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert!(v.iter().all(|x| x.is_finite()));
        assert!(
            v[..d] != v[d..2 * d],
            "{name}: two different images gave the same features"
        );
    }
    // An output that is or names a folder, one already there (a link to nowhere too), and a
    // size below one patch, are refused before any work.
    let d = dir.to_str().expect("utf-8 path");
    let w = "tests/fixtures/tiny_dinov2/model.safetensors";
    let p = "assets/images/chelsea.png";
    let slash = format!("{}/", dir.join("new").display());
    let link = dir.join("link.safetensors");
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("nowhere"), &link).expect("link");
    #[cfg(not(unix))]
    std::fs::write(&link, b"the user's").expect("file");
    let link = link.to_str().expect("utf-8 path");
    for (args, what) in [
        (["--size", "28", "-o", d], "names a folder"),
        (["--size", "28", "-o", &slash], "names a folder"),
        (["--size", "28", "-o", link], "already exists"),
        (["--size", "13", "-o", "x.safetensors"], "--size 13"),
    ] {
        let out = dinoscope(&[&["embed", "--weights", w, p][..], &args[..]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(what),
            "{args:?}: {err}"
        );
    }
    assert!(!dir.join("new").exists(), "a refused -o made a folder");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn embed_and_attention_never_overwrite_their_inputs() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("no-overwrite");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let weights = dir.join("model.safetensors");
    let picture = dir.join("input.png");
    std::fs::copy("tests/fixtures/tiny_dinov2/model.safetensors", &weights).expect("copy");
    std::fs::copy("assets/images/chelsea.png", &picture).expect("copy");
    let before = (
        std::fs::read(&weights).expect("weights"),
        std::fs::read(&picture).expect("picture"),
    );
    let w = weights.to_str().expect("utf-8 path");
    let p = picture.to_str().expect("utf-8 path");
    // The features file onto the weights, then onto the picture (named another way).
    let aliased = format!(
        "{}/../{}/input.png",
        dir.display(),
        dir.file_name().and_then(|n| n.to_str()).expect("name")
    );
    for target in [w, aliased.as_str()] {
        let out = dinoscope(&["embed", "--weights", w, p, "--size", "28", "-o", target]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "embed -o {target} succeeded");
        assert!(err.contains("is an input"), "{err}");
    }
    // Attention maps into the picture's own folder would write input.png over it.
    let out = dinoscope(&[
        "attention",
        "--weights",
        w,
        p,
        "--size",
        "28",
        "-o",
        dir.to_str().expect("utf-8 path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "attention into the input folder succeeded"
    );
    assert!(
        err.contains("input.png") && err.contains("is an input"),
        "{err}"
    );
    let after = (
        std::fs::read(&weights).expect("weights"),
        std::fs::read(&picture).expect("picture"),
    );
    assert!(before == after, "an input was modified");
    // Nor files that exist at their output paths, unless told to.
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "mine").expect("write");
    let maps = dir.join("maps");
    std::fs::create_dir_all(&maps).expect("mkdir");
    std::fs::write(maps.join("pca.png"), "mine").expect("write");
    let n = notes.to_str().expect("utf-8 path");
    let m = maps.to_str().expect("utf-8 path");
    let run = |args: &[&str]| {
        let out = dinoscope(&[args, &["--weights", w][..]].concat());
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (cmd, target) in [("embed", n), ("attention", m)] {
        let (ok, err) = run(&[cmd, p, "--size", "28", "-o", target]);
        assert!(!ok && err.contains("--overwrite"), "{cmd}: {err}");
    }
    assert_eq!(std::fs::read_to_string(&notes).expect("notes"), "mine");
    assert_eq!(std::fs::read(maps.join("pca.png")).expect("pca"), b"mine");
    let (ok, err) = run(&["attention", p, "--size", "28", "-o", m, "--overwrite"]);
    assert!(ok, "{err}");
    assert_ne!(std::fs::read(maps.join("pca.png")).expect("pca"), b"mine");
    // A file where an output folder goes, and a folder without pictures, are named.
    let inside = notes.join("features.safetensors");
    let i = inside.to_str().expect("utf-8 path");
    let (ok, err) = run(&["embed", p, "--size", "28", "-o", i]);
    assert!(!ok && err.contains("notes.txt: is a file"), "{err}");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let e = empty.to_str().expect("utf-8 path");
    let (ok, err) = run(&["embed", e, "--size", "28", "-o", i]);
    assert!(!ok && err.contains("empty: no images"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A picture of an aspect ratio whose input passes the adapter's largest binding is refused
/// naming the picture, its patch grid and what to change, with no device error first, and
/// nothing is written.
#[test]
fn attention_names_a_picture_too_long_for_the_adapter() {
    let Some(gpu) = common::gpu() else { return };
    // At --size 448 a 6000×40 picture becomes 67200×448 pixels, 4800×32 patches of 14: its
    // 361 MB of input pass CI's adapters' largest binding (128 MiB), not every GPU's.
    let input = 3 * 448 * 67_200 * 4;
    let limit = gpu.limits.max_storage_buffer_binding_size;
    if limit >= input {
        eprintln!("this adapter binds {limit} bytes: the 6000×40 picture fits, nothing to check");
        return;
    }
    let dir = tmp("attention_long");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let picture = dir.join("long.png");
    image::RgbImage::from_fn(6000, 40, |x, y| image::Rgb([x as u8, y as u8, 90]))
        .save(&picture)
        .expect("write the picture");
    let maps = dir.join("maps");
    let out = dinoscope(&[
        "attention",
        "--weights",
        "tests/fixtures/tiny_dinov2/model.safetensors",
        picture.to_str().expect("utf-8 path"),
        "-o",
        maps.to_str().expect("utf-8 path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 361 MB input was bound");
    assert!(
        err.contains("long.png: a 6000×40 picture at --size 448 is 4800×32 = 153600 patches")
            && err.contains("smaller --size"),
        "{err}"
    );
    assert!(!err.contains("Validation Error"), "{err}");
    assert!(!maps.exists(), "maps were written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn knn_k_and_attention_threshold_out_of_range_are_refused() {
    for (args, what) in [
        (
            vec![
                "knn",
                "--weights",
                "w",
                "--train",
                "a",
                "--test",
                "b",
                "--k",
                "0",
            ],
            "--k",
        ),
        (
            vec![
                "attention",
                "--weights",
                "w",
                "x.png",
                "-o",
                "o",
                "--threshold",
                "NaN",
            ],
            "--threshold",
        ),
        (
            vec![
                "attention",
                "--weights",
                "w",
                "x.png",
                "-o",
                "o",
                "--threshold",
                "1.5",
            ],
            "--threshold",
        ),
    ] {
        let out = dinoscope(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(what), "{args:?}: {err}");
    }
}

/// An IDX set names every label up to its largest, so a test label that no training image
/// carries (here 1, between the training set's 0 and 2) is refused by name, not scored as 0%.
#[test]
fn knn_refuses_an_idx_test_label_the_training_images_lack() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("knn-idx");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let write = |name: &str, labels: &[u8]| {
        let n = labels.len() as u32;
        let mut images = vec![0, 0, 8, 3];
        for d in [n, 28, 28] {
            images.extend_from_slice(&d.to_be_bytes());
        }
        images.extend((0..n as usize * 784).map(|i| (i * 37 % 251) as u8));
        std::fs::write(dir.join(format!("{name}-images-idx3-ubyte")), images).expect("write");
        let mut l = vec![0, 0, 8, 1];
        l.extend_from_slice(&n.to_be_bytes());
        l.extend_from_slice(labels);
        std::fs::write(dir.join(format!("{name}-labels-idx1-ubyte")), l).expect("write");
    };
    write("train", &[0, 2, 0, 2]);
    write("test", &[0, 1, 2]);
    let path = |s: &str| {
        dir.join(format!("{s}-images-idx3-ubyte"))
            .to_str()
            .expect("utf-8")
            .to_string()
    };
    let out = dinoscope(&[
        "knn",
        "--weights",
        "tests/fixtures/tiny_dinov2/model.safetensors",
        "--train",
        &path("train"),
        "--test",
        &path("test"),
        "--size",
        "28",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("[\"1\"] have no images in"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn knn_matches_classes_by_name_and_refuses_unseen_ones() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("knn-names");
    let put = |set: &str, class: &str, pics: &[&str]| {
        let d = dir.join(set).join(class);
        std::fs::create_dir_all(&d).expect("mkdir");
        for p in pics {
            std::fs::copy(format!("assets/images/{p}.png"), d.join(format!("{p}.png")))
                .expect("copy");
        }
    };
    put("train", "zebra", &["chelsea", "coffee"]);
    put("train", "apple", &["astronaut"]);
    put("other", "a", &["chelsea"]);
    put("other", "b", &["astronaut"]);
    put("same", "zebra", &["chelsea", "coffee"]);
    let path = |s: &str| dir.join(s).to_str().expect("utf-8 path").to_string();
    let knn_at = |test: &str, size: &str| {
        dinoscope(&[
            "knn",
            "--weights",
            "tests/fixtures/tiny_dinov2/model.safetensors",
            "--train",
            &path("train"),
            "--test",
            &path(test),
            "--size",
            size,
            "--k",
            "1",
        ])
    };
    let knn = |test: &str| knn_at(test, "28");
    // Classes named differently are not paired by their sorted position.
    let out = knn("other");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "k-NN across unrelated classes succeeded"
    );
    assert!(
        err.contains("\"a\"") && err.contains("have no images in"),
        "{err}"
    );
    // A test set with a subset of the classes: "zebra" is train class 1 (after "apple"), and
    // the same pictures find themselves.
    let out = knn("same");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("train: 3 images in 2 classes; test: 2 images in 1 class "),
        "{text}"
    );
    assert!(text.contains("100.00%"), "{text}");
    // An unreadable picture is skipped with a warning naming it, as training skips it; a size
    // that is not a multiple of the patch is cropped to one, and one below a patch is refused.
    std::fs::write(dir.join("same/zebra/broken.png"), "not a picture").expect("write");
    let out = knn_at("same", "20");
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && text.contains("100.00%"),
        "{text}{err}"
    );
    assert!(err.contains("broken.png") && err.contains("14×14"), "{err}");
    let out = knn_at("same", "13");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--size 13"), "{err}");
    // Views too large for the host's batch are refused before any is made.
    let out = knn_at("same", "100000");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--size 100000") && err.contains("GiB"),
        "{err}"
    );
    // A class whose every training picture is unreadable is refused like a missing one, not
    // scored as misses.
    put("lost", "zebra", &["chelsea"]);
    std::fs::create_dir_all(dir.join("lost/apple")).expect("mkdir");
    std::fs::write(dir.join("lost/apple/broken.png"), "not a picture").expect("write");
    put("both", "apple", &["astronaut"]);
    put("both", "zebra", &["coffee"]);
    let out = dinoscope(&[
        "knn",
        "--weights",
        "tests/fixtures/tiny_dinov2/model.safetensors",
        "--train",
        &path("lost"),
        "--test",
        &path("both"),
        "--size",
        "28",
        "--k",
        "1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("[\"apple\"] have no readable images in"),
        "{err}"
    );
    // A folder named like the bundled set is the user's, and is the one read.
    put("fashion-mnist", "zebra", &["chelsea", "coffee"]);
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny_dinov2/model.safetensors");
    let out = common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["knn", "--weights"])
        .arg(&weights)
        .args(["--train", "fashion-mnist", "--test", "same", "--size", "28"])
        .args(["--k", "1"])
        .current_dir(&dir)
        .output()
        .expect("run dinoscope");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("train: 2 images in 1 class;"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dinov3_weights_give_attention_maps_and_features() {
    if common::gpu().is_none() {
        return;
    }
    let out_dir = tmp("attention-v3");
    let out = dinoscope(&[
        "attention",
        "--weights",
        "tests/fixtures/tiny_dinov3/model.safetensors",
        "assets/images/chelsea.png",
        "--size",
        "224",
        "-o",
        out_dir.to_str().expect("utf-8 path"),
    ]);
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    // The storage tokens are not drawn: the maps are the patch grid's.
    let cfg = fixture_config("tiny_dinov3");
    let (w, h) = map_size(cfg.patch, 224);
    let last = format!("head{}.png", cfg.heads - 1);
    for name in [last.as_str(), "mean_overlay.png", "pca.png"] {
        let img = image::open(out_dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .to_rgb8();
        assert_eq!((img.width(), img.height()), (w, h), "{name} size");
        let first = *img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| *p != first), "{name} is constant");
    }
    // The weights alone, without config.json: taken as DINOv3 from their names.
    let lone = tmp("v3-lone");
    std::fs::create_dir_all(&lone).expect("mkdir");
    let w = lone.join("w.safetensors");
    std::fs::copy("tests/fixtures/tiny_dinov3/model.safetensors", &w).expect("copy");
    let features = lone.join("f.safetensors");
    let out = dinoscope(&[
        "embed",
        "--weights",
        w.to_str().expect("utf-8"),
        "assets/images/chelsea.png",
        "assets/images/coffee.png",
        "--size",
        "64",
        "-o",
        features.to_str().expect("utf-8"),
    ]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let f = dinoscope::fixtures::TensorFile::open(&features).expect("features");
    assert_eq!(f.get("cls").expect("cls").shape, vec![2, cfg.dim]);
    let _ = std::fs::remove_dir_all(&out_dir);
    let _ = std::fs::remove_dir_all(&lone);
}

/// `--precision f16` stores the model and its activations in half precision: the features
/// follow the f32 ones within the documented f16 tolerance, and attention maps are written.
#[test]
fn f16_precision_gives_the_f32_features_within_its_tolerance() {
    let Some(gpu) = common::gpu() else { return };
    let dir = tmp("embed-f16");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut feats = Vec::new();
    for precision in ["f32", "f16"] {
        let out_file = dir.join(format!("{precision}.safetensors"));
        let out = dinoscope(&[
            "embed",
            "--weights",
            "tests/fixtures/tiny_dinov2_reg/model.safetensors",
            "assets/images/chelsea.png",
            "assets/images/coffee.png",
            "--size",
            "56",
            "--precision",
            precision,
            "-o",
            out_file.to_str().expect("utf-8 path"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if precision == "f16" && !common::f16(gpu, "embed and attention in f16") {
            assert!(!out.status.success() && err.contains("SHADER_F16"), "{err}");
            return;
        }
        assert!(out.status.success(), "{precision}: {err}");
        let f = dinoscope::fixtures::TensorFile::open(&out_file).expect("features");
        feats.push(f.get("cls").expect("cls").data.clone());
    }
    let scale = feats[0].iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = feats[0]
        .iter()
        .zip(&feats[1])
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("f16 vs f32 CLS features: max err {err:.3e} (scale {scale:.3})");
    assert!(
        err > 0.0,
        "the f16 run gave bit-identical features: did it run in f16?"
    );
    assert!(
        err <= dinoscope::selftest::F16_TOLERANCE * scale,
        "f16 features off by {err}"
    );
    let maps = dir.join("maps");
    let out = dinoscope(&[
        "attention",
        "--weights",
        "tests/fixtures/tiny_dinov3/model.safetensors",
        "assets/images/chelsea.png",
        "--size",
        "64",
        "--precision",
        "f16",
        "-o",
        maps.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(maps.join("pca.png").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
