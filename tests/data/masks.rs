//! iBOT masks: the collate and the block masking generator.

use super::*;

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
