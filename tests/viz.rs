//! Attention maps, colour and PCA pictures on hand-built inputs (no GPU).

use dinoscope::viz::{
    cls_attention, colorize, head_mean, mask_overlay, overlay, pca_rgb, save_png, threshold_mass,
    tile_images, upsample_bilinear, upsample_nearest, Colormap, VizError,
};
use image::{Rgb, RgbImage};

/// Attention probabilities whose CLS row holds `100·head + column` and every other row −1,
/// so any entry picked from the wrong row or column is recognisable.
fn probs_with_known_cls_row(heads: usize, n_tokens: usize) -> Vec<f32> {
    let mut probs = vec![-1.0f32; heads * n_tokens * n_tokens];
    for h in 0..heads {
        for j in 0..n_tokens {
            probs[h * n_tokens * n_tokens + j] = (100 * h + j) as f32;
        }
    }
    probs
}

#[test]
fn cls_attention_takes_patch_columns_of_cls_row() {
    let (heads, gh, gw) = (3, 2, 3);
    let n_tokens = 1 + gh * gw;
    let probs = probs_with_known_cls_row(heads, n_tokens);
    let maps = cls_attention(&probs, heads, n_tokens, 0, gh, gw).unwrap();
    assert_eq!(maps.len(), heads);
    for (h, map) in maps.iter().enumerate() {
        let expected: Vec<f32> = (1..n_tokens).map(|j| (100 * h + j) as f32).collect();
        assert_eq!(map, &expected, "head {h}");
    }
}

#[test]
fn cls_attention_takes_the_cls_rows_alone_too() {
    let (heads, registers, gh, gw) = (3, 1, 2, 3);
    let n_tokens = 1 + registers + gh * gw;
    let full = probs_with_known_cls_row(heads, n_tokens);
    let rows: Vec<f32> = full
        .chunks_exact(n_tokens * n_tokens)
        .flat_map(|head| head[..n_tokens].to_vec())
        .collect();
    let from_full = cls_attention(&full, heads, n_tokens, registers, gh, gw).unwrap();
    let from_rows = cls_attention(&rows, heads, n_tokens, registers, gh, gw).unwrap();
    assert_eq!(from_full, from_rows);
    assert_eq!(from_rows[2][0], 202.0);
}

#[test]
fn cls_attention_skips_register_columns() {
    let (heads, registers, gh, gw) = (2, 4, 2, 2);
    let n_tokens = 1 + registers + gh * gw;
    let probs = probs_with_known_cls_row(heads, n_tokens);
    let maps = cls_attention(&probs, heads, n_tokens, registers, gh, gw).unwrap();
    assert_eq!(maps[0], vec![5.0, 6.0, 7.0, 8.0]);
    assert_eq!(maps[1], vec![105.0, 106.0, 107.0, 108.0]);
}

#[test]
fn cls_attention_rejects_mismatched_sizes() {
    let probs = probs_with_known_cls_row(2, 5);
    // Token count that disagrees with the grid.
    let err = cls_attention(&probs, 2, 5, 1, 2, 2).unwrap_err();
    assert!(err.to_string().contains("5 tokens"), "{err}");
    // Too few probabilities for the heads.
    let err = cls_attention(&probs, 3, 5, 0, 2, 2).unwrap_err();
    assert!(err.to_string().contains("probabilities"), "{err}");
    assert!(cls_attention(&probs, 0, 5, 0, 2, 2).is_err());
    assert!(cls_attention(&[], 1, 1, 0, 0, 3).is_err());
    assert!(cls_attention(&probs, 2, 5, 0, usize::MAX, 2).is_err());
}

#[test]
fn head_mean_averages_each_position() {
    let maps = vec![vec![1.0, 2.0, 3.0], vec![3.0, 4.0, 5.0]];
    assert_eq!(head_mean(&maps), vec![2.0, 3.0, 4.0]);
    assert!(head_mean::<Vec<f32>>(&[]).is_empty());
}

#[test]
fn threshold_mass_keeps_smallest_top_set_holding_60_percent() {
    // Ascending: 0.02 0.05 0.05 0.08 0.10 | 0.15 0.25 0.30; cumulative sums 0.02 0.07 0.12
    // 0.20 0.30 | 0.45 0.70 1.00, so the last three pass 1 − 0.6 = 0.4. They hold 0.70 and
    // the top two alone only 0.55.
    let map = [0.05, 0.30, 0.10, 0.25, 0.02, 0.08, 0.15, 0.05];
    let expected = [false, true, false, true, false, false, true, false];
    assert_eq!(threshold_mass(&map, 0.6), expected);
    // The CLS row also attends to CLS and registers, so patch mass sums below 1.
    let scaled: Vec<f32> = map.iter().map(|v| v * 0.37).collect();
    assert_eq!(threshold_mass(&scaled, 0.6), expected);
    // keep = 1 keeps every position with mass; keep = 0 keeps nothing.
    assert_eq!(
        threshold_mass(&[0.0, 1.0, 2.0], 1.0),
        vec![false, true, true]
    );
    assert_eq!(threshold_mass(&map, 0.0), vec![false; 8]);
}

#[test]
fn threshold_mass_survives_degenerate_maps() {
    assert_eq!(threshold_mass(&[0.0; 4], 0.6), vec![false; 4]);
    assert!(threshold_mass(&[], 0.6).is_empty());
    assert_eq!(threshold_mass(&[f32::NAN; 3], 0.6), vec![false; 3]);
    assert_eq!(threshold_mass(&[1.0, 2.0], f32::NAN), vec![false; 2]);
    assert_eq!(
        threshold_mass(&[f32::NAN, 1.0, f32::INFINITY, -3.0, 3.0], 0.6),
        vec![false, false, false, false, true]
    );
}

#[test]
fn upsample_nearest_repeats_patches() {
    let map = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
    let out = upsample_nearest(&map, 2, 3, 4, 6);
    assert_eq!(out.len(), 24);
    for y in 0..4 {
        for x in 0..6 {
            assert_eq!(out[y * 6 + x], map[(y / 2) * 3 + x / 2], "({y}, {x})");
        }
    }
    // Non-integer factor: floor(dst · 2 / 3) picks sources 0, 0, 1.
    let out = upsample_nearest(&[1.0, 2.0, 3.0, 4.0], 2, 2, 3, 3);
    assert_eq!(out, vec![1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 4.0]);
    // Patch size 14, as the model uses.
    assert_eq!(upsample_nearest(&map, 2, 3, 28, 42).len(), 28 * 42);
    // A map shorter than its grid reads zeros instead of panicking.
    assert_eq!(upsample_nearest(&[7.0], 1, 2, 1, 2), vec![7.0, 0.0]);
    assert!(upsample_nearest(&map, 2, 3, 0, 5).is_empty());
}

#[test]
fn upsample_bilinear_interpolates_between_centres() {
    let out = upsample_bilinear(&[0.0, 1.0], 1, 2, 1, 4);
    let expected = [0.0, 0.25, 0.75, 1.0];
    for (o, e) in out.iter().zip(expected) {
        assert!((o - e).abs() < 1e-6, "{out:?}");
    }
    let flat = upsample_bilinear(&[0.5; 6], 2, 3, 7, 11);
    assert_eq!(flat.len(), 77);
    assert!(flat.iter().all(|&v| (v - 0.5).abs() < 1e-6));
}

#[test]
fn colormaps_hit_their_endpoints() {
    let map = [0.0, 1.0];
    let img = colorize(&map, 2, 1, Colormap::Inferno);
    assert_eq!(img.get_pixel(0, 0), &Rgb([0, 0, 4]));
    assert_eq!(img.get_pixel(1, 0), &Rgb([252, 255, 164]));
    let img = colorize(&map, 2, 1, Colormap::Viridis);
    assert_eq!(img.get_pixel(0, 0), &Rgb([68, 1, 84]));
    assert_eq!(img.get_pixel(1, 0), &Rgb([253, 231, 37]));
    let img = colorize(&[-3.0, 5.0], 2, 1, Colormap::Gray);
    assert_eq!(img.get_pixel(0, 0), &Rgb([0, 0, 0]));
    assert_eq!(img.get_pixel(1, 0), &Rgb([255, 255, 255]));
    // Middle of viridis is its teal (#21918c), within the interpolation's rounding.
    let mid = Colormap::Viridis.rgb(0.5);
    for (got, want) in mid.iter().zip([33u8, 145, 140]) {
        assert!(got.abs_diff(want) <= 2, "{mid:?}");
    }
}

#[test]
fn colorize_constant_and_nan_maps_are_one_colour() {
    let img = colorize(&[0.25; 6], 3, 2, Colormap::Inferno);
    let first = *img.get_pixel(0, 0);
    assert!(img.pixels().all(|p| *p == first));
    let img = colorize(
        &[f32::NAN, 1.0, f32::INFINITY, 3.0],
        2,
        2,
        Colormap::Viridis,
    );
    assert_eq!(img.get_pixel(0, 0), &Rgb(Colormap::Viridis.rgb(0.0)));
    assert_eq!(img.get_pixel(1, 1), &Rgb(Colormap::Viridis.rgb(1.0)));
    // A short map leaves the missing pixels at the low end.
    let img = colorize(&[1.0, 2.0], 2, 2, Colormap::Gray);
    assert_eq!(img.get_pixel(1, 1), &Rgb([0, 0, 0]));
}

#[test]
fn overlay_and_mask_blend_as_asked() {
    let base = RgbImage::from_pixel(4, 4, Rgb([200, 100, 50]));
    let heat = RgbImage::from_pixel(2, 2, Rgb([0, 254, 100]));
    assert_eq!(overlay(&base, &heat, 0.0), base);
    let full = overlay(&base, &heat, 1.0);
    assert_eq!(full.dimensions(), (4, 4));
    assert!(full.pixels().all(|p| *p == Rgb([0, 254, 100])));
    let half = overlay(&base, &heat, 0.5);
    assert_eq!(half.get_pixel(3, 3), &Rgb([100, 177, 75]));

    // Keep the top-left and bottom-right cells of a 2 × 2 mask.
    let masked = mask_overlay(&base, &[true, false, false, true], 2, 2, 0.5);
    assert_eq!(masked.get_pixel(0, 0), &Rgb([200, 100, 50]));
    assert_eq!(masked.get_pixel(3, 3), &Rgb([200, 100, 50]));
    assert_eq!(masked.get_pixel(3, 0), &Rgb([100, 50, 25]));
    assert_eq!(masked.get_pixel(0, 3), &Rgb([100, 50, 25]));
    let dark = mask_overlay(&base, &[], 2, 2, 0.0);
    assert!(dark.pixels().all(|p| *p == Rgb([0, 0, 0])));
}

/// Small deterministic noise in [−amp, amp].
fn noise(state: &mut u64, amp: f32) -> f32 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
}

/// An 8 × 8 grid of `d`-dimensional features: the centred 4 × 4 square near `a`, the rest
/// near `b`.
fn square_features(a: &[f32], b: &[f32], seed: u64) -> (Vec<f32>, Vec<bool>) {
    let d = a.len();
    let mut state = seed;
    let mut feats = Vec::with_capacity(64 * d);
    let mut inside = Vec::with_capacity(64);
    for y in 0..8 {
        for x in 0..8 {
            let sq = (2..6).contains(&y) && (2..6).contains(&x);
            inside.push(sq);
            let base = if sq { a } else { b };
            feats.extend(base.iter().map(|v| v + noise(&mut state, 0.05)));
        }
    }
    (feats, inside)
}

fn direction(d: usize, k: usize) -> Vec<f32> {
    (0..d)
        .map(|i| ((i * k + 3) % 7) as f32 / 7.0 - 0.4)
        .collect()
}

#[test]
fn pca_marks_centred_square_as_foreground() {
    let d = 16;
    let (a, b) = (direction(d, 1), direction(d, 5));
    // Both ways round: the border rule, not PCA's arbitrary sign, must decide the side.
    for (fa, fb) in [(&a, &b), (&b, &a)] {
        let (feats, inside) = square_features(fa, fb, 7);
        let maps = pca_rgb(&feats, 64, d, 8, 8).unwrap();
        assert_eq!(maps.foreground, inside);
        for (i, &s) in maps.first.iter().enumerate() {
            assert_eq!(s > 0.0, inside[i], "patch {i} score {s}");
        }
        assert_eq!(maps.rgb.dimensions(), (8, 8));
        let fg: Vec<Rgb<u8>> = (0..64)
            .filter(|&i| inside[i])
            .map(|i| *maps.rgb.get_pixel(i as u32 % 8, i as u32 / 8))
            .collect();
        assert!(
            fg.iter().any(|p| *p != fg[0]),
            "foreground colours are all {:?}",
            fg[0]
        );
        for c in 0..3 {
            let channel: Vec<u8> = fg.iter().map(|p| p[c]).collect();
            assert_eq!(channel.iter().min(), Some(&0), "channel {c}");
            assert_eq!(channel.iter().max(), Some(&255), "channel {c}");
        }
        for i in (0..64).filter(|&i| !inside[i]) {
            assert_eq!(
                maps.rgb.get_pixel(i as u32 % 8, i as u32 / 8),
                &Rgb([0, 0, 0])
            );
        }
    }
}

#[test]
fn pca_is_deterministic_and_route_independent() {
    // 4 × 4 patches: 16 ≥ 8 dims goes through the covariance, the same features padded with
    // zeros to 40 dims through the Gram matrix; both must draw the same picture.
    let d = 8;
    let mut state = 11;
    let mut feats = Vec::new();
    for i in 0..16 {
        for j in 0..d {
            let object = if (1..3).contains(&(i / 4)) && (1..3).contains(&(i % 4)) {
                1.0
            } else {
                0.0
            };
            feats.push(object * (j as f32 * 0.1 + 0.5) + noise(&mut state, 0.2));
        }
    }
    let a = pca_rgb(&feats, 16, d, 4, 4).unwrap();
    let object: Vec<bool> = (0..16)
        .map(|i| matches!((i / 4, i % 4), (1 | 2, 1 | 2)))
        .collect();
    assert_eq!(a.foreground, object);
    let again = pca_rgb(&feats, 16, d, 4, 4).unwrap();
    assert_eq!(a.first, again.first);
    assert_eq!(a.rgb, again.rgb);

    let wide = 40;
    let padded: Vec<f32> = feats
        .chunks(d)
        .flat_map(|row| {
            row.iter()
                .copied()
                .chain(std::iter::repeat_n(0.0, wide - d))
        })
        .collect();
    let b = pca_rgb(&padded, 16, wide, 4, 4).unwrap();
    assert_eq!(a.foreground, b.foreground);
    for (x, y) in a.first.iter().zip(&b.first) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
    for (p, q) in a.rgb.pixels().zip(b.rgb.pixels()) {
        for c in 0..3 {
            assert!(p[c].abs_diff(q[c]) <= 1, "{p:?} vs {q:?}");
        }
    }
}

#[test]
fn pca_constant_features_give_black_picture() {
    let feats = vec![0.1f32; 64 * 12];
    let maps = pca_rgb(&feats, 64, 12, 8, 8).unwrap();
    assert!(maps.first.iter().all(|&s| s == 0.0));
    assert!(maps.foreground.iter().all(|&f| f));
    assert!(maps.rgb.pixels().all(|p| *p == Rgb([0, 0, 0])));
    let zeros = pca_rgb(&[0.0; 9 * 4], 9, 4, 3, 3).unwrap();
    assert!(zeros.rgb.pixels().all(|p| *p == Rgb([0, 0, 0])));
}

#[test]
fn pca_handles_tiny_inputs() {
    for (n, d, gh, gw) in [
        (1, 1, 1, 1),
        (2, 1, 1, 2),
        (3, 2, 3, 1),
        (2, 5, 2, 1),
        (4, 2, 2, 2),
    ] {
        let feats: Vec<f32> = (0..n * d).map(|i| (i * i % 5) as f32).collect();
        let maps = pca_rgb(&feats, n, d, gh, gw).unwrap();
        assert_eq!(maps.first.len(), n);
        assert_eq!(maps.foreground.len(), n);
        assert_eq!(maps.rgb.dimensions(), (gw as u32, gh as u32));
    }
}

#[test]
fn pca_rejects_bad_input() {
    assert!(matches!(
        pca_rgb(&[0.0; 12], 4, 3, 3, 3),
        Err(VizError::Shape(_))
    ));
    assert!(pca_rgb(&[0.0; 11], 4, 3, 2, 2).is_err());
    assert!(pca_rgb(&[], 0, 3, 0, 0).is_err());
    assert!(pca_rgb(&[], 4, 0, 2, 2).is_err());
    let mut feats = vec![1.0f32; 12];
    feats[7] = f32::NAN;
    let err = pca_rgb(&feats, 4, 3, 2, 2).unwrap_err();
    assert!(err.to_string().contains("patch 2"), "{err}");
}

#[test]
fn tile_images_lays_out_rows() {
    let red = RgbImage::from_pixel(2, 2, Rgb([255, 0, 0]));
    let blue = RgbImage::from_pixel(2, 2, Rgb([0, 0, 255]));
    let grid = tile_images(&[red.clone(), blue, red], 2);
    assert_eq!(grid.dimensions(), (6, 6));
    assert_eq!(grid.get_pixel(0, 0), &Rgb([255, 0, 0]));
    assert_eq!(grid.get_pixel(4, 1), &Rgb([0, 0, 255]));
    assert_eq!(grid.get_pixel(1, 5), &Rgb([255, 0, 0]));
    assert_eq!(grid.get_pixel(5, 5), &Rgb([255, 255, 255]));
    assert_eq!(tile_images(&[], 3).dimensions(), (0, 0));
    assert_eq!(tile_images(&[RgbImage::new(3, 1)], 0).dimensions(), (3, 1));
}

#[test]
fn save_png_writes_a_readable_png() {
    let dir = std::env::temp_dir().join(format!("dinoscope-viz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = colorize(&[0.0, 0.5, 1.0, 0.25, 0.75, 0.1], 3, 2, Colormap::Inferno);
    let path = dir.join("map.png");
    save_png(&img, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let back = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(back, img);

    let missing = dir.join("no-such-folder").join("map.png");
    let err = save_png(&img, &missing).unwrap_err();
    assert!(err.to_string().contains("no-such-folder"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pca_runs_at_model_size() {
    // ViT-S/14 on a 518 × 518 image: 37 × 37 patches of 384 features, with an object in the
    // middle that is the only structure apart from noise.
    let (g, d) = (37, 384);
    let (a, b) = (direction(d, 2), direction(d, 3));
    let mut state = 5;
    let mut feats = Vec::with_capacity(g * g * d);
    for y in 0..g {
        for x in 0..g {
            let inside = (10..27).contains(&y) && (12..25).contains(&x);
            let base = if inside { &a } else { &b };
            feats.extend(base.iter().map(|v| v + noise(&mut state, 0.3)));
        }
    }
    let start = std::time::Instant::now();
    let maps = pca_rgb(&feats, g * g, d, g, g).unwrap();
    let took = start.elapsed();
    let fg = maps.foreground.iter().filter(|&&f| f).count();
    assert_eq!(fg, 17 * 13, "took {took:?}");
    assert!(!maps.foreground[0]);
    eprintln!("pca_rgb at 1369 × 384: {took:?}");
}
