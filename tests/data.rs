//! Data pipeline tests (no GPU): PRNG, datasets, augmentation, iBOT masks and the loader.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dinoscope::data::augment::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, augment_crop, color_jitter,
    eval_view, gaussian_blur, grayscale, hflip, multi_crop, normalize_chw, random_resized_crop_box,
    solarize, AugmentConfig, CropKind,
};
use dinoscope::data::dataset::{
    fashion_mnist_bundled, open_dataset, DataError, Dataset, IdxDataset, ImageFolder, InMemoryGrey,
    FASHION_MNIST_CLASSES,
};
use dinoscope::data::image::{IMAGENET_MEAN, IMAGENET_STD};
use dinoscope::data::loader::{build_batch, Batch, Loader, LoaderConfig, MASK_STREAM};
use dinoscope::data::masks::{
    batch_masks, batch_masks_with_targets, mask_upperbound, mask_weights, masked_crop_count,
    MaskingGenerator,
};
use dinoscope::data::rng::Rng;
use image::{Rgb, RgbImage};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion_mnist")
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dinoscope-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A picture whose every pixel differs: red follows x, green follows y, blue mixes both.
fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w.max(2).saturating_sub(1).max(1)).min(255) as u8,
            (y * 255 / h.max(2).saturating_sub(1).max(1)).min(255) as u8,
            ((x * 7 + y * 13) % 256) as u8,
        ])
    })
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------- rng

#[test]
fn rng_is_deterministic_and_resumable() {
    let a: Vec<u64> = {
        let mut r = Rng::new(42);
        (0..100).map(|_| r.next_u64()).collect()
    };
    let b: Vec<u64> = {
        let mut r = Rng::new(42);
        (0..100).map(|_| r.next_u64()).collect()
    };
    assert_eq!(a, b);
    let mut c = Rng::new(43);
    assert_ne!(a[0], c.next_u64());

    // Derived streams depend on every key word and on their order.
    let first = |key: &[u64]| Rng::derive(7, key).next_u64();
    assert_eq!(first(&[1, 2]), first(&[1, 2]));
    let distinct = [
        first(&[]),
        first(&[0]),
        first(&[1, 2]),
        first(&[2, 1]),
        first(&[1, 2, 0]),
        Rng::derive(8, &[1, 2]).next_u64(),
    ];
    for i in 0..distinct.len() {
        for j in i + 1..distinct.len() {
            assert_ne!(distinct[i], distinct[j], "streams {i} and {j} coincide");
        }
    }

    // Exact resume through serde.
    let mut r = Rng::new(5);
    for _ in 0..17 {
        r.next_u64();
    }
    let saved = serde_json::to_string(&r).unwrap();
    let mut restored: Rng = serde_json::from_str(&saved).unwrap();
    for _ in 0..50 {
        assert_eq!(r.next_u64(), restored.next_u64());
    }
    assert!(serde_json::from_str::<Rng>("[0,0,0,0]").is_err());
    assert_eq!(Rng::from_state(r.state()), Some(r.clone()));
    assert_eq!(Rng::from_state([0; 4]), None);
}

#[test]
fn rng_ranges_and_shuffle() {
    let mut r = Rng::new(1);
    let mut counts = [0usize; 7];
    let mut sum = 0.0f64;
    for _ in 0..70_000 {
        let u = r.uniform();
        assert!((0.0..1.0).contains(&u));
        sum += f64::from(u);
        let v = r.range(-2.0, 3.0);
        assert!((-2.0..=3.0).contains(&v));
        counts[r.below(7)] += 1;
    }
    assert!((sum / 70_000.0 - 0.5).abs() < 0.01);
    for c in counts {
        assert!((9_000..11_000).contains(&c), "below(7) counts {counts:?}");
    }
    assert_eq!(r.below(0), 0);
    assert_eq!(r.below(1), 0);
    assert!(!r.bernoulli(0.0));
    assert!(r.bernoulli(1.0));
    let hits = (0..10_000).filter(|_| r.bernoulli(0.3)).count();
    assert!((2_700..3_300).contains(&hits));

    let mut items: Vec<u32> = (0..100).collect();
    r.shuffle(&mut items);
    assert_ne!(items, (0..100).collect::<Vec<_>>());
    let mut sorted = items.clone();
    sorted.sort();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    let mut again: Vec<u32> = (0..100).collect();
    let mut r1 = Rng::new(9);
    let mut r2 = Rng::new(9);
    r1.shuffle(&mut again);
    let mut again2: Vec<u32> = (0..100).collect();
    r2.shuffle(&mut again2);
    assert_eq!(again, again2);
}

// ---------------------------------------------------------------- datasets

#[test]
fn bundled_fashion_mnist_subset() {
    let (train, test) = fashion_mnist_bundled().unwrap();
    assert_eq!(train.len(), 3000);
    assert_eq!(test.len(), 1000);
    for ds in [&train, &test] {
        assert_eq!((ds.width(), ds.height()), (28, 28));
        assert_eq!(ds.num_classes(), Some(10));
        let labels = ds.labels().unwrap();
        assert!(labels.iter().all(|&l| l < 10));
        // Every class is present in both subsets.
        for c in 0..10 {
            assert!(labels.contains(&c), "class {c} missing");
        }
        let s = ds.get(0).unwrap();
        assert_eq!(s.image.dimensions(), (28, 28));
        assert!(s.image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        assert_eq!(s.label, ds.label(0));
        assert!(ds.get(ds.len()).is_err());
    }
    assert_eq!(FASHION_MNIST_CLASSES.len(), 10);
    assert_eq!(FASHION_MNIST_CLASSES[9], "Ankle boot");
    // The first training item of Fashion-MNIST is an ankle boot; the first test item too.
    assert_eq!(train.label(0), Some(9));
    assert_eq!(test.label(0), Some(9));

    // The files on disk parse to the same data.
    let from_files = IdxDataset::open(
        &assets().join("train-images-idx3-ubyte.gz"),
        Some(&assets().join("train-labels-idx1-ubyte.gz")),
    )
    .unwrap();
    assert_eq!(from_files.len(), 3000);
    assert_eq!(from_files.grey().pixels(2999), train.pixels(2999));
    assert_eq!(from_files.grey().labels(), train.labels());
    assert!(from_files.describe().contains("3000"));
}

#[test]
fn an_idx_training_file_is_evaluated_on_its_test_split() {
    use dinoscope::train::run::datasets;
    // The bundled files by path: trained on, and k-NN from train to t10k, like the bundled set.
    let (train, eval) = datasets(Some(&assets().join("train-images-idx3-ubyte.gz"))).unwrap();
    let (tr, te) = eval.expect("the t10k split beside it");
    assert_eq!((train.len(), tr.len(), te.len()), (3000, 3000, 1000));
    assert_eq!(te.label(0), Some(9));

    // Plain files named `…-test-…` count too; without a test split, or unlabelled, no k-NN.
    let dir = scratch("idx-splits");
    let images = gunzip(&std::fs::read(assets().join("t10k-images-idx3-ubyte.gz")).unwrap());
    let labels = gunzip(&std::fs::read(assets().join("t10k-labels-idx1-ubyte.gz")).unwrap());
    for (name, bytes) in [
        ("train-images-idx3-ubyte", &images),
        ("train-labels-idx1-ubyte", &labels),
        ("test-images-idx3-ubyte", &images),
        ("test-labels-idx1-ubyte", &labels),
        ("lone-train-images-idx3-ubyte", &images),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let (_, eval) = datasets(Some(&dir.join("train-images-idx3-ubyte"))).unwrap();
    assert_eq!(eval.map(|(a, b)| (a.len(), b.len())), Some((1000, 1000)));
    let (_, eval) = datasets(Some(&dir.join("lone-train-images-idx3-ubyte"))).unwrap();
    assert!(eval.is_none(), "no lone-t10k/test split and no labels");
    let (_, eval) = datasets(Some(&dir.join("test-images-idx3-ubyte"))).unwrap();
    assert!(eval.is_none(), "a test file is not a training file");
    std::fs::remove_file(dir.join("test-labels-idx1-ubyte")).unwrap();
    let (_, eval) = datasets(Some(&dir.join("train-images-idx3-ubyte"))).unwrap();
    assert!(eval.is_none(), "an unlabelled test split");
}

#[test]
fn open_dataset_finds_idx_labels() {
    let ds = open_dataset(&assets().join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(ds.len(), 1000);
    assert_eq!(ds.num_classes(), Some(10));
    assert!(ds.label(5).is_some());

    // Plain (not gzipped) files work too, and the labels are found by name.
    let dir = scratch("plain-idx");
    let images = gunzip(&std::fs::read(assets().join("t10k-images-idx3-ubyte.gz")).unwrap());
    let labels = gunzip(&std::fs::read(assets().join("t10k-labels-idx1-ubyte.gz")).unwrap());
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let plain = open_dataset(&dir.join("t10k-images-idx3-ubyte")).unwrap();
    assert_eq!(plain.len(), 1000);
    assert_eq!(plain.label(999), ds.label(999));

    // Without a labels file the set is unlabelled.
    std::fs::write(dir.join("other-images-idx3-ubyte"), &images).unwrap();
    let unlabelled = open_dataset(&dir.join("other-images-idx3-ubyte")).unwrap();
    assert_eq!(unlabelled.num_classes(), None);
    assert_eq!(unlabelled.label(0), None);

    // A labels file, a text file and a missing path are refused with their names.
    let err = open_dataset(&dir.join("t10k-labels-idx1-ubyte"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte") && err.contains("labels"),
        "{err}"
    );
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();
    let err = open_dataset(&dir.join("notes.txt"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("notes.txt") && err.contains("not a dataset"),
        "{err}"
    );
    let err = open_dataset(&dir.join("missing"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn idx_errors_name_the_file() {
    let dir = scratch("bad-idx");
    let images = gunzip(&std::fs::read(assets().join("t10k-images-idx3-ubyte.gz")).unwrap());
    let labels = gunzip(&std::fs::read(assets().join("t10k-labels-idx1-ubyte.gz")).unwrap());

    // Cut in the middle of the pixel data.
    let cut = dir.join("cut-images-idx3-ubyte");
    std::fs::write(&cut, &images[..16 + 28 * 28 * 10 + 5]).unwrap();
    let err = IdxDataset::open(&cut, None).err().unwrap();
    assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("cut-images-idx3-ubyte") && msg.contains("truncated"),
        "{msg}"
    );

    // Cut inside the header.
    let short = dir.join("short-images-idx3-ubyte");
    std::fs::write(&short, &images[..10]).unwrap();
    let msg = IdxDataset::open(&short, None).err().unwrap().to_string();
    assert!(
        msg.contains("short-images-idx3-ubyte") && msg.contains("header"),
        "{msg}"
    );

    // Garbage with a wrong magic number.
    let garbage = dir.join("garbage.gz");
    std::fs::write(&garbage, gzip(b"this is not an IDX file at all")).unwrap();
    let msg = IdxDataset::open(&garbage, None).err().unwrap().to_string();
    assert!(msg.contains("garbage.gz") && msg.contains("magic"), "{msg}");

    // A gzip stream cut short.
    let gz = std::fs::read(assets().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let cut_gz = dir.join("cut.gz");
    std::fs::write(&cut_gz, &gz[..gz.len() / 2]).unwrap();
    let msg = IdxDataset::open(&cut_gz, None).err().unwrap().to_string();
    assert!(msg.contains("cut.gz"), "{msg}");

    // Labels and images swapped.
    let lab = dir.join("l-idx1-ubyte");
    std::fs::write(&lab, &labels).unwrap();
    let img = dir.join("i-idx3-ubyte");
    std::fs::write(&img, &images).unwrap();
    let msg = IdxDataset::open(&lab, Some(&img))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("l-idx1-ubyte") && msg.contains("labels file"),
        "{msg}"
    );

    // Fewer labels than images.
    let mut few = labels[..8].to_vec();
    few[4..8].copy_from_slice(&999u32.to_be_bytes());
    few.extend_from_slice(&labels[8..8 + 999]);
    let few_path = dir.join("few-labels-idx1-ubyte");
    std::fs::write(&few_path, &few).unwrap();
    let msg = IdxDataset::open(&img, Some(&few_path))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("few-labels-idx1-ubyte") && msg.contains("999"),
        "{msg}"
    );

    // Extra bytes after the data.
    let mut long = images.clone();
    long.extend_from_slice(&[0; 7]);
    let long_path = dir.join("long-idx3-ubyte");
    std::fs::write(&long_path, &long).unwrap();
    let msg = IdxDataset::open(&long_path, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("long-idx3-ubyte") && msg.contains('7'),
        "{msg}"
    );

    // Missing file.
    let msg = IdxDataset::open(&dir.join("nope"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("nope"), "{msg}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn in_memory_grey_checks_sizes() {
    let ds = InMemoryGrey::new("tiny", 2, 3, (0..12).collect(), Some(vec![0, 4])).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.num_classes(), Some(5));
    let s = ds.get(1).unwrap();
    assert_eq!(s.image.dimensions(), (2, 3));
    assert_eq!(s.image.get_pixel(1, 2).0, [11, 11, 11]);
    assert_eq!(s.label, Some(4));
    assert!(InMemoryGrey::new("odd", 2, 3, vec![0; 13], None).is_err());
    assert!(InMemoryGrey::new("labels", 2, 3, vec![0; 12], Some(vec![1])).is_err());
    assert!(InMemoryGrey::new("empty", 0, 3, vec![], None).is_err());
}

/// A folder with classes `cat` (3 pictures) and `dog` (2 + one broken file).
fn class_folder(name: &str) -> PathBuf {
    let dir = scratch(name);
    for (class, n) in [("dog", 2u32), ("cat", 3)] {
        let sub = dir.join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..n {
            gradient(20 + i, 16 + 2 * i)
                .save(sub.join(format!("{class}{i}.png")))
                .unwrap();
        }
    }
    std::fs::write(dir.join("dog/broken.png"), b"\x89PNG not really").unwrap();
    std::fs::write(dir.join("dog/readme.txt"), b"ignored").unwrap();
    std::fs::write(dir.join("cat/.hidden.png"), b"ignored").unwrap();
    dir
}

#[test]
fn image_folder_classes_and_errors() {
    let dir = class_folder("folder");
    let ds = ImageFolder::open(&dir).unwrap();
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.classes(), ["cat", "dog"]);
    assert_eq!(ds.num_classes(), Some(2));
    let labels: Vec<_> = (0..6).map(|i| ds.label(i)).collect();
    assert_eq!(
        labels,
        [Some(0), Some(0), Some(0), Some(1), Some(1), Some(1)]
    );
    let names: Vec<String> = (0..6)
        .map(|i| {
            ds.path(i)
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "cat0.png",
            "cat1.png",
            "cat2.png",
            "broken.png",
            "dog0.png",
            "dog1.png"
        ]
    );
    let s = ds.get(1).unwrap();
    assert_eq!(s.image.dimensions(), (21, 18));
    assert_eq!(s.label, Some(0));
    let err = ds.get(3).err().unwrap().to_string();
    assert!(err.contains("broken.png"), "{err}");
    assert!(ds.get(6).is_err());
    assert!(ds.describe().contains("2 classes"));

    // open_dataset on a folder gives the same listing.
    let opened = open_dataset(&dir).unwrap();
    assert_eq!(opened.len(), 6);
    assert_eq!(opened.label(4), Some(1));

    // Pictures directly in the root: unlabelled.
    let flat = scratch("flat");
    gradient(8, 8).save(flat.join("a.png")).unwrap();
    std::fs::create_dir_all(flat.join("sub")).unwrap();
    gradient(8, 8).save(flat.join("sub/b.png")).unwrap();
    let ds = ImageFolder::open(&flat).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.num_classes(), None);
    assert_eq!(ds.label(0), None);

    // No pictures at all.
    let empty = scratch("empty");
    let err = ImageFolder::open(&empty).err().unwrap().to_string();
    assert!(err.contains("no png"), "{err}");
    for d in [dir, flat, empty] {
        let _ = std::fs::remove_dir_all(d);
    }
}

// ---------------------------------------------------------------- augmentation

fn small_config() -> AugmentConfig {
    AugmentConfig {
        global_size: 32,
        local_size: 16,
        n_local: 3,
        ..AugmentConfig::default()
    }
}

#[test]
fn augment_defaults_are_dinov2() {
    let c = AugmentConfig::default();
    assert_eq!((c.global_size, c.local_size, c.n_local), (224, 98, 8));
    assert_eq!(c.blur_p, [0.0, 0.9, 0.5]);
    assert_eq!(c.solarize_p, [0.0, 0.2]);
    assert_eq!(c.blur_kernel, 9);
    c.validate().unwrap();
    let back: AugmentConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    for bad in [
        AugmentConfig {
            global_size: 0,
            ..c.clone()
        },
        AugmentConfig {
            blur_kernel: 8,
            ..c.clone()
        },
        AugmentConfig {
            flip_p: 1.5,
            ..c.clone()
        },
        AugmentConfig {
            local_scale: (0.5, 0.1),
            ..c.clone()
        },
        AugmentConfig { hue: 0.7, ..c },
    ] {
        assert!(matches!(bad.validate(), Err(DataError::Config(_))));
    }
}

#[test]
fn multi_crop_sizes_and_determinism() {
    let img = gradient(60, 45);
    let cfg = small_config();
    let a = multi_crop(&img, &cfg, &mut Rng::new(3));
    let b = multi_crop(&img, &cfg, &mut Rng::new(3));
    let c = multi_crop(&img, &cfg, &mut Rng::new(4));
    assert_eq!(a, b);
    assert_ne!(a, c);
    for g in &a.globals {
        assert_eq!(g.len(), 3 * 32 * 32);
        assert!(g.iter().all(|v| v.is_finite() && v.abs() < 3.0));
    }
    assert_ne!(a.globals[0], a.globals[1]);
    assert_eq!(a.locals.len(), 3);
    for l in &a.locals {
        assert_eq!(l.len(), 3 * 16 * 16);
    }
    // The default sizes on a grey Fashion-MNIST picture.
    let (train, _) = fashion_mnist_bundled().unwrap();
    let full = multi_crop(
        &train.get(0).unwrap().image,
        &AugmentConfig::default(),
        &mut Rng::new(0),
    );
    assert_eq!(full.globals[1].len(), 3 * 224 * 224);
    assert_eq!(full.locals.len(), 8);
    assert_eq!(full.locals[7].len(), 3 * 98 * 98);
    // Zero-sized pictures do not panic.
    let empty = multi_crop(&RgbImage::new(0, 0), &cfg, &mut Rng::new(1));
    assert_eq!(empty.globals[0].len(), 3 * 32 * 32);
}

#[test]
fn crop_box_follows_torchvision() {
    let mut rng = Rng::new(11);
    for _ in 0..2000 {
        let b = random_resized_crop_box(120, 80, (0.05, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert!(b.width >= 1 && b.height >= 1);
        assert!(b.left + b.width <= 120 && b.top + b.height <= 80);
        let area = f64::from(b.width * b.height) / (120.0 * 80.0);
        assert!(area <= 1.0);
    }
    // Full area at ratio 1 on a square picture is the whole picture.
    let b = random_resized_crop_box(50, 50, (1.0, 1.0), (1.0, 1.0), &mut rng);
    assert_eq!((b.top, b.left, b.height, b.width), (0, 0, 50, 50));
    // Impossible areas fall back to a centred crop with the aspect clamped into the range.
    let b = random_resized_crop_box(200, 50, (2.0, 2.0), (0.75, 4.0 / 3.0), &mut rng);
    assert_eq!((b.height, b.width), (50, 67));
    assert_eq!((b.top, b.left), (0, (200 - 67) / 2));
    let b = random_resized_crop_box(40, 40, (2.0, 2.0), (0.75, 4.0 / 3.0), &mut rng);
    assert_eq!((b.top, b.left, b.height, b.width), (0, 0, 40, 40));
}

#[test]
fn single_augmentations_on_known_pictures() {
    let img = gradient(9, 7);

    let mut flipped = img.clone();
    hflip(&mut flipped);
    for (x, y, p) in flipped.enumerate_pixels() {
        assert_eq!(*p, *img.get_pixel(8 - x, y));
    }

    let mut grey = img.clone();
    grayscale(&mut grey);
    for (src, p) in img.pixels().zip(grey.pixels()) {
        assert!(p[0] == p[1] && p[1] == p[2]);
        let want =
            0.299 * f64::from(src[0]) + 0.587 * f64::from(src[1]) + 0.114 * f64::from(src[2]);
        assert!((f64::from(p[0]) - want).abs() <= 0.51, "{p:?} vs {want}");
    }

    let ramp = RgbImage::from_fn(256, 1, |x, _| Rgb([x as u8, (255 - x) as u8, 128]));
    let mut sol = ramp.clone();
    solarize(&mut sol, 128);
    for (src, p) in ramp.pixels().zip(sol.pixels()) {
        for c in 0..3 {
            let want = if src[c] >= 128 { 255 - src[c] } else { src[c] };
            assert_eq!(p[c], want);
        }
    }

    // Jitter with every strength at zero leaves the picture alone.
    let zero = AugmentConfig {
        brightness: 0.0,
        contrast: 0.0,
        saturation: 0.0,
        hue: 0.0,
        ..AugmentConfig::default()
    };
    let mut rng = Rng::new(5);
    for _ in 0..10 {
        let mut j = img.clone();
        color_jitter(&mut j, &zero, &mut rng);
        assert_eq!(j, img);
    }
    // With the default strengths it changes it.
    let mut j = img.clone();
    color_jitter(&mut j, &AugmentConfig::default(), &mut rng);
    assert_ne!(j, img);

    // Neutral factors are identities; extreme ones have known results.
    for f in [adjust_brightness, adjust_contrast, adjust_saturation] {
        let mut same = img.clone();
        f(&mut same, 1.0);
        assert_eq!(same, img);
    }
    let mut black = img.clone();
    adjust_brightness(&mut black, 0.0);
    assert!(black.pixels().all(|p| p.0 == [0, 0, 0]));
    let mut flat = img.clone();
    adjust_contrast(&mut flat, 0.0);
    let first = *flat.get_pixel(0, 0);
    assert!(flat.pixels().all(|p| *p == first && p[0] == p[1]));
    let mut desat = img.clone();
    adjust_saturation(&mut desat, 0.0);
    assert_eq!(desat, grey);

    // Hue: a grey picture has no hue; a half turn maps red to cyan.
    let mut g2 = grey.clone();
    adjust_hue(&mut g2, 0.3);
    assert_eq!(g2, grey);
    let mut red = RgbImage::from_pixel(2, 2, Rgb([200, 0, 0]));
    adjust_hue(&mut red, 0.5);
    let p = red.get_pixel(0, 0);
    assert!(p[0] < 5 && p[1] > 195 && p[2] > 195, "{p:?}");
    let mut same = img.clone();
    adjust_hue(&mut same, 0.0);
    assert_eq!(same, img);

    // Blur keeps a flat picture flat, keeps the mean of a ramp and smooths an impulse.
    let mut flat = RgbImage::from_pixel(12, 10, Rgb([10, 100, 250]));
    gaussian_blur(&mut flat, 9, 1.7);
    assert!(flat.pixels().all(|p| p.0 == [10, 100, 250]));
    let mut dot = RgbImage::new(15, 15);
    dot.put_pixel(7, 7, Rgb([255, 255, 255]));
    gaussian_blur(&mut dot, 9, 1.0);
    let centre = dot.get_pixel(7, 7)[0];
    assert!(centre > 20 && centre < 255);
    assert_eq!(dot.get_pixel(6, 7), dot.get_pixel(8, 7));
    assert_eq!(dot.get_pixel(7, 6), dot.get_pixel(7, 8));
    assert!(dot.get_pixel(6, 7)[0] < centre);
    // A tiny picture is reflect-padded without panicking.
    let mut tiny = gradient(2, 1);
    gaussian_blur(&mut tiny, 9, 2.0);
}

#[test]
fn crop_probabilities_are_respected() {
    // With every random step off, a crop is the resized picture itself.
    let off = AugmentConfig {
        global_size: 16,
        local_size: 8,
        global_scale: (1.0, 1.0),
        ratio: (1.0, 1.0),
        flip_p: 0.0,
        jitter_p: 0.0,
        grayscale_p: 0.0,
        blur_p: [0.0; 3],
        solarize_p: [0.0; 2],
        ..AugmentConfig::default()
    };
    let img = gradient(16, 16);
    let out = augment_crop(&img, CropKind::Global1, &off, &mut Rng::new(2));
    assert_eq!(out, img);
    // Forced flip, grey and solarize on global crop 2.
    let on = AugmentConfig {
        flip_p: 1.0,
        grayscale_p: 1.0,
        solarize_p: [0.0, 1.0],
        ..off.clone()
    };
    let out = augment_crop(&img, CropKind::Global2, &on, &mut Rng::new(2));
    let mut want = img.clone();
    hflip(&mut want);
    grayscale(&mut want);
    solarize(&mut want, 128);
    assert_eq!(out, want);
    // Global crop 1 is not solarized with these probabilities.
    let out = augment_crop(&img, CropKind::Global1, &on, &mut Rng::new(2));
    let mut want = img.clone();
    hflip(&mut want);
    grayscale(&mut want);
    assert_eq!(out, want);
}

#[test]
fn normalisation_and_eval_view() {
    let img = RgbImage::from_pixel(40, 30, Rgb([255, 128, 0]));
    let chw = normalize_chw(&img);
    assert_eq!(chw.len(), 3 * 40 * 30);
    for c in 0..3 {
        let v = [1.0, 128.0 / 255.0, 0.0][c];
        let want = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        assert!((chw[c * 1200] - want).abs() < 1e-6);
        assert!((chw[c * 1200 + 1199] - want).abs() < 1e-6);
    }
    let view = eval_view(&img, 24);
    assert_eq!(view.len(), 3 * 24 * 24);
    assert!((view[0] - chw[0]).abs() < 1e-5);
    assert!((view[2 * 576] - chw[2 * 1200]).abs() < 1e-5);
    // At 28 → 32 → 28 the view of a 28×28 picture is its upscaled centre.
    let g = gradient(28, 28);
    let v = eval_view(&g, 28);
    assert_eq!(v.len(), 3 * 28 * 28);
    assert_ne!(v, normalize_chw(&g));
    // A thin strip does not blow up.
    let strip = RgbImage::from_pixel(20_000, 1, Rgb([0, 0, 0]));
    assert_eq!(eval_view(&strip, 224).len(), 3 * 224 * 224);
}

// ---------------------------------------------------------------- masks

#[test]
fn masks_follow_ibot_collate() {
    let (grid, b) = (16usize, 16usize);
    let n = grid * grid;
    let n_crops = 2 * b;
    let mut rng = Rng::new(21);
    for round in 0..20 {
        let masks = batch_masks_with_targets(n_crops, grid, grid, 0.5, (0.1, 0.5), &mut rng);
        assert_eq!(masks.len(), n_crops);
        let masked: Vec<_> = masks.iter().filter(|(_, t)| *t > 0).collect();
        assert_eq!(masked.len(), masked_crop_count(n_crops, 0.5));
        assert_eq!(masked.len(), 16);
        let mut targets: Vec<usize> = Vec::new();
        for (m, t) in &masks {
            assert_eq!(m.len(), n);
            let count = m.iter().filter(|&&v| v).count();
            assert!(count <= *t, "round {round}: {count} > target {t}");
            if *t > 0 {
                assert!(count > 0, "round {round}: empty mask for target {t}");
                targets.push(*t);
            }
        }
        // Targets come one from each ratio bin: from ⌊0.1·N⌋ up to ⌊0.5·N⌋.
        targets.sort();
        assert!(targets[0] >= n / 10 && *targets.last().unwrap() <= n / 2);
        let total: usize = targets.iter().sum();
        assert!(total <= mask_upperbound(n_crops, n, 0.5, (0.1, 0.5)));

        let plain: Vec<Vec<bool>> = masks.into_iter().map(|(m, _)| m).collect();
        let (indices, weights) = mask_weights(&plain);
        assert_eq!(indices.len(), weights.len());
        let flat: Vec<bool> = plain.iter().flatten().copied().collect();
        assert_eq!(indices.len(), flat.iter().filter(|&&v| v).count());
        assert!(indices.iter().all(|&i| flat[i as usize]));
        assert!(indices.windows(2).all(|w| w[0] < w[1]));
        let sum: f32 = weights.iter().sum();
        assert!((sum - 16.0).abs() < 1e-3, "weights sum {sum}");
    }
    // Which crops are masked is shuffled.
    let a = batch_masks(n_crops, grid, grid, 0.5, (0.1, 0.5), &mut Rng::new(1));
    let b2 = batch_masks(n_crops, grid, grid, 0.5, (0.1, 0.5), &mut Rng::new(2));
    let which = |m: &[Vec<bool>]| m.iter().map(|r| r.iter().any(|&v| v)).collect::<Vec<_>>();
    assert_ne!(which(&a), which(&b2));
    // Deterministic for a seed.
    let a2 = batch_masks(n_crops, grid, grid, 0.5, (0.1, 0.5), &mut Rng::new(1));
    assert_eq!(a, a2);
    // Odd crop counts round down; no probability, no masks.
    assert_eq!(masked_crop_count(7, 0.5), 3);
    assert_eq!(masked_crop_count(8, 0.0), 0);
    let none = batch_masks(4, 4, 4, 0.0, (0.1, 0.5), &mut Rng::new(1));
    assert!(none.iter().flatten().all(|&v| !v));
    let (i, w) = mask_weights(&none);
    assert!(i.is_empty() && w.is_empty());
}

#[test]
fn masking_generator_blocks() {
    let g = MaskingGenerator::new(16, 16);
    let mut rng = Rng::new(3);
    for target in [0usize, 4, 25, 77, 128] {
        let m = g.generate(target, &mut rng);
        let count = m.iter().filter(|&&v| v).count();
        assert!(count <= target);
        if target >= 4 {
            assert!(count > 0);
        }
    }
    // A grid too small for any block gives an empty mask instead of looping.
    let tiny = MaskingGenerator::new(1, 1);
    assert!(tiny.generate(5, &mut rng).iter().all(|&v| !v));
}

// ---------------------------------------------------------------- loader

fn loader_config(workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 4,
        seed: 77,
        workers,
        prefetch: 2,
        patch: 8,
        mask_prob: 0.5,
        mask_ratio: (0.1, 0.5),
        augment: small_config(),
    }
}

fn bundled_train() -> Arc<dyn Dataset> {
    let (train, _) = fashion_mnist_bundled().unwrap();
    // 30 items: 7 batches of 4 per epoch, so a few steps cross an epoch boundary.
    let pixels: Vec<u8> = (0..30)
        .flat_map(|i| train.pixels(i).unwrap().to_vec())
        .collect();
    let labels = train.labels().unwrap()[..30].to_vec();
    Arc::new(InMemoryGrey::new("fashion-30", 28, 28, pixels, Some(labels)).unwrap())
}

fn take(loader: &mut Loader, n: usize) -> Vec<Batch> {
    (0..n).map(|_| loader.next_batch().unwrap()).collect()
}

#[test]
fn loader_is_independent_of_workers() {
    let ds = bundled_train();
    let reference = take(&mut Loader::new(ds.clone(), loader_config(0), 0), 10);
    for workers in [1, 3] {
        let got = take(&mut Loader::new(ds.clone(), loader_config(workers), 0), 10);
        assert_eq!(got, reference, "{workers} workers");
    }
    for (i, b) in reference.iter().enumerate() {
        assert_eq!(b.step, i as u64);
        assert_eq!(b.epoch, i as u64 / 7);
        assert_eq!(b.globals.len(), 2 * 4 * 3 * 32 * 32);
        assert_eq!(b.locals.len(), 3 * 4 * 3 * 16 * 16);
        assert_eq!(b.masks.len(), 2 * 4 * 4 * 4);
        assert_eq!(b.labels.len(), 4);
        assert_eq!(b.skipped, 0);
        assert!(b.masks.iter().all(|&m| m == 0.0 || m == 1.0));
        let masked_rows = b.masks.chunks(16).filter(|r| r.contains(&1.0)).count();
        assert!(masked_rows <= 4);
    }
    // Different seeds give different batches.
    let other = LoaderConfig {
        seed: 78,
        ..loader_config(0)
    };
    assert_ne!(take(&mut Loader::new(ds, other, 0), 1)[0], reference[0]);
}

#[test]
fn loader_resumes_at_any_step() {
    let ds = bundled_train();
    let fresh = take(&mut Loader::new(ds.clone(), loader_config(2), 0), 12);
    for k in [1u64, 6, 7, 9] {
        let mut resumed = Loader::new(ds.clone(), loader_config(if k % 2 == 0 { 0 } else { 3 }), k);
        assert_eq!(resumed.step(), k);
        let got = take(&mut resumed, 3);
        assert_eq!(got[..], fresh[k as usize..k as usize + 3], "resume at {k}");
        assert_eq!(
            build_batch(ds.clone(), &loader_config(0), k).unwrap(),
            fresh[k as usize]
        );
    }
}

#[test]
fn loader_layout_is_crop_major() {
    let ds = bundled_train();
    let cfg = loader_config(0);
    let mut loader = Loader::new(ds.clone(), cfg.clone(), 0);
    assert_eq!(loader.batches_per_epoch(), 7);
    let steps = take(&mut loader, 8);
    // Epoch 0 and 1 permutations, as the loader documents them.
    let perm = |epoch: u64| {
        let mut p: Vec<usize> = (0..30).collect();
        Rng::derive(cfg.seed, &[epoch]).shuffle(&mut p);
        p
    };
    let (b, gplane, lplane) = (4usize, 3 * 32 * 32, 3 * 16 * 16);
    for (step, epoch) in [(2usize, 0u64), (7, 1)] {
        let batch = &steps[step];
        let first = (step % 7) * b;
        // The model's input: the 8-bit crops normalised as `multi_crop` normalises them.
        let (globals, locals) = (batch.globals_normalized(), batch.locals_normalized(3));
        for k in 0..b {
            let pos = first + k;
            let idx = perm(epoch)[pos];
            let sample = ds.get(idx).unwrap();
            let crops = multi_crop(
                &sample.image,
                &cfg.augment,
                &mut Rng::derive(cfg.seed, &[epoch, pos as u64]),
            );
            for c in 0..2 {
                let row = c * b + k;
                assert_eq!(globals[row * gplane..(row + 1) * gplane], crops.globals[c]);
            }
            for s in 0..3 {
                let row = s * b + k;
                assert_eq!(locals[row * lplane..(row + 1) * lplane], crops.locals[s]);
            }
            assert_eq!(batch.labels[k], ds.label(idx));
        }
        let masks = batch_masks(
            2 * b,
            4,
            4,
            0.5,
            (0.1, 0.5),
            &mut Rng::derive(cfg.seed, &[step as u64, MASK_STREAM]),
        );
        let flat: Vec<f32> = masks
            .iter()
            .flatten()
            .map(|&m| if m { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(batch.masks, flat);
    }
    // Each epoch visits every item once over its full batches.
    let mut labels0: Vec<Option<u32>> = steps[..7].iter().flat_map(|s| s.labels.clone()).collect();
    let mut want: Vec<Option<u32>> = perm(0)[..28].iter().map(|&i| ds.label(i)).collect();
    labels0.sort();
    want.sort();
    assert_eq!(labels0, want);
}

#[test]
fn loader_replaces_unreadable_images() {
    let dir = class_folder("loader");
    let ds: Arc<dyn Dataset> = Arc::new(ImageFolder::open(&dir).unwrap());
    let cfg = LoaderConfig {
        batch_size: 6,
        ..loader_config(0)
    };
    // One batch per epoch covers all six files, so the broken one is met exactly once.
    let inline = take(&mut Loader::new(ds.clone(), cfg.clone(), 0), 3);
    let threaded = take(
        &mut Loader::new(
            ds.clone(),
            LoaderConfig {
                workers: 2,
                ..cfg.clone()
            },
            0,
        ),
        3,
    );
    assert_eq!(inline, threaded);
    for b in &inline {
        assert_eq!(b.skipped, 1);
        assert_eq!(b.labels.len(), 6);
        // The broken file is a dog; its replacement may be either class.
        let dogs = b.labels.iter().filter(|&&l| l == Some(1)).count();
        assert!((1..=3).contains(&dogs));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn loader_reports_bad_settings() {
    let ds = bundled_train();
    let mut too_big = Loader::new(
        ds.clone(),
        LoaderConfig {
            batch_size: 31,
            ..loader_config(2)
        },
        0,
    );
    let err = too_big.next_batch().err().unwrap();
    assert!(matches!(err, DataError::TooSmall { .. }), "{err:?}");
    let mut bad_patch = Loader::new(
        ds.clone(),
        LoaderConfig {
            patch: 0,
            ..loader_config(0)
        },
        0,
    );
    assert!(matches!(bad_patch.next_batch(), Err(DataError::Config(_))));
    // Dropping a loader with busy workers returns promptly.
    let loader = Loader::new(ds, loader_config(3), 0);
    drop(loader);
}
