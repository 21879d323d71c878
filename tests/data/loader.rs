//! The loader: independent of its workers, resumable, crop-major, and its errors.

use super::*;

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
        gram_from: 0,
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
    let mut cfg = loader_config(0);
    // The Gram teacher's crops follow the global crops' rows.
    cfg.augment.gram_size = 40;
    let mut loader = Loader::new(ds.clone(), cfg.clone(), 0);
    assert_eq!(loader.batches_per_epoch(), 7);
    let steps = take(&mut loader, 8);
    // Before `gram_from` the batches leave the Gram crops out and are otherwise the same.
    let late = LoaderConfig {
        gram_from: 5,
        ..cfg.clone()
    };
    for (step, (a, b)) in take(&mut Loader::new(ds.clone(), late, 0), 8)
        .iter()
        .zip(&steps)
        .enumerate()
    {
        assert_eq!(a.gram.is_empty(), step < 5, "step {step}");
        assert_eq!(
            (&a.globals, &a.locals, &a.masks),
            (&b.globals, &b.locals, &b.masks)
        );
        if step >= 5 {
            assert_eq!(a, b);
        }
    }
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
        let (gram, splane) = (batch.gram_normalized(), 3 * 40 * 40);
        assert_eq!(gram.len(), 2 * b * splane);
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
                assert_eq!(gram[row * splane..(row + 1) * splane], crops.gram[c]);
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

/// A folder most of whose pictures cannot be read is refused before the first batch, instead
/// of training on batches of the few readable ones over and over.
#[test]
fn loader_refuses_a_mostly_unreadable_folder() {
    let dir = class_folder("loader_mostly_broken");
    for i in 0..6 {
        std::fs::write(dir.join(format!("cat/broken{i}.png")), b"\x89PNG truncated").unwrap();
    }
    let ds: Arc<dyn Dataset> = Arc::new(ImageFolder::open(&dir).unwrap());
    assert_eq!(ds.len(), 12);
    for workers in [0, 2] {
        let mut loader = Loader::new(
            ds.clone(),
            LoaderConfig {
                batch_size: 4,
                ..loader_config(workers)
            },
            0,
        );
        let Err(err) = loader.next_batch() else {
            panic!("not refused")
        };
        assert!(
            matches!(
                err,
                DataError::MostlyUnreadable {
                    bad: 7,
                    sampled: 12,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("7 of 12 items"), "{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
    // Past 32 items the sample is spread over the whole list: here the readable ones come
    // first (30, then 40 that are not), so the first 32 alone would pass.
    let dir = scratch("loader_broken_tail");
    for (class, n, good) in [("a", 30, true), ("b", 40, false)] {
        let sub = dir.join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..n {
            let p = sub.join(format!("{i:02}.png"));
            if good {
                gradient(12, 12).save(p).unwrap();
            } else {
                std::fs::write(p, b"\x89PNG truncated").unwrap();
            }
        }
    }
    let ds: Arc<dyn Dataset> = Arc::new(ImageFolder::open(&dir).unwrap());
    let Err(err) = Loader::new(ds, loader_config(0), 0).next_batch() else {
        panic!("not refused")
    };
    assert!(
        matches!(
            err,
            DataError::MostlyUnreadable {
                bad: 18,
                sampled: 32,
                ..
            }
        ),
        "{err:?}"
    );
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
