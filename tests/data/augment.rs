//! Augmentation: DINOv2's defaults, multi-crop, crop boxes and single transforms.

use super::*;

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

/// DINOv3's Gram-teacher crops: each global crop's window and flip at `gram_size`, without
/// colour, blur or solarize, from the same draws (the other crops do not change).
#[test]
fn gram_crops_share_the_global_crops_windows_without_distortions() {
    let img = gradient(60, 45);
    let cfg = AugmentConfig {
        jitter_p: 1.0,
        grayscale_p: 0.5,
        blur_p: [1.0, 1.0, 0.5],
        solarize_p: [1.0, 1.0],
        ..small_config()
    };
    let plain = multi_crop(&img, &cfg, &mut Rng::new(5));
    assert!(plain.gram.is_empty());
    let same = AugmentConfig {
        gram_size: cfg.global_size,
        ..cfg.clone()
    };
    let with = multi_crop(&img, &same, &mut Rng::new(5));
    assert_eq!(
        (&with.globals, &with.locals),
        (&plain.globals, &plain.locals)
    );
    assert_eq!(with.gram.len(), 2);
    // Global crop 1's window comes before any colour draw: without distortions it is the crop.
    let undistorted = AugmentConfig {
        jitter_p: 0.0,
        grayscale_p: 0.0,
        blur_p: [0.0; 3],
        solarize_p: [0.0; 2],
        ..cfg.clone()
    };
    let bare = multi_crop(&img, &undistorted, &mut Rng::new(5));
    assert_eq!(with.gram[0], bare.globals[0]);
    assert_ne!(with.gram[0], with.globals[0]);
    // At twice the side: the same window, resampled finer (a gradient's mean stays put).
    let twice = multi_crop(
        &img,
        &AugmentConfig {
            gram_size: 2 * cfg.global_size,
            ..cfg.clone()
        },
        &mut Rng::new(5),
    );
    assert_eq!(twice.globals, plain.globals);
    for (fine, coarse) in twice.gram.iter().zip(&with.gram) {
        assert_eq!(fine.len(), 4 * coarse.len());
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(
            (mean(fine) - mean(coarse)).abs() < 0.02,
            "{} {}",
            mean(fine),
            mean(coarse)
        );
    }
    let over = AugmentConfig {
        gram_size: 5000,
        ..cfg
    };
    assert!(matches!(over.validate(), Err(DataError::Config(_))));
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
