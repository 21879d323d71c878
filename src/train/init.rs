//! Initialisation from scratch (spec §1.8 and §2), deterministic from a seed.

use super::config::{HeadInit, InitConfig};
use crate::data::rng::Rng;
use crate::model::params::ParamLayout;
use std::collections::BTreeMap;

/// A normal sample (Box-Muller).
pub fn normal(rng: &mut Rng) -> f32 {
    let u1 = rng.uniform_f64().max(1e-300);
    let u2 = rng.uniform_f64();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// The standard deviation of the CLS and register (storage) tokens at init: DINOv2's 1e-6, where
/// the position table added to CLS keeps its tokens apart from zero; DINOv3's 0.02 with rotary
/// positions, where nothing is added and a token of size 1e-6 would enter the first layer norm
/// as nearly zero (its variance far under eps), whose backward then multiplies the token's
/// gradient by about 1/√eps.
pub fn token_std(rope: bool) -> f32 {
    if rope {
        0.02
    } else {
        1e-6
    }
}

/// Truncated normal with absolute bounds ±2 (PyTorch's default `trunc_normal_`).
pub fn trunc_normal(rng: &mut Rng, std: f32) -> f32 {
    loop {
        let v = normal(rng) * std;
        if v.abs() <= 2.0 {
            return v;
        }
    }
}

/// Initial values of every parameter of a layout, by name: Linear weights trunc_normal(0.02)
/// and zero biases; the patch convolution PyTorch's default uniform ±1/√fan_in; LayerNorm 1 and
/// 0; LayerScale `init.layerscale` (DINOv2: 1e-5); CLS and registers N(0, `token_std`); mask
/// token 0; position table trunc_normal(0.02); the head's MLP as `init.head` says; the head's
/// weight-normed last layer v uniform ±1/√fan_in and g = 1.
pub fn init_params(
    layout: &ParamLayout,
    seed: u64,
    init: &InitConfig,
    token_std: f32,
) -> BTreeMap<String, Vec<f32>> {
    let mut out = BTreeMap::new();
    for (i, e) in layout.entries.iter().enumerate() {
        let mut rng = Rng::derive(seed, &[0x1417, i as u64]);
        let n = e.numel();
        let name = e.name.as_str();
        let fan_in = if e.shape.len() >= 2 {
            e.shape[1..].iter().product::<usize>()
        } else {
            n
        };
        let uniform = |rng: &mut Rng, bound: f32| {
            (0..n)
                .map(|_| rng.range(-bound, bound))
                .collect::<Vec<f32>>()
        };
        let v: Vec<f32> = if name.ends_with("patch_embed.proj.weight")
            || name.ends_with("patch_embed.proj.bias")
        {
            // Conv2d default: bias bound also 1/√fan_in of the weight.
            let fan = layout
                .entries
                .iter()
                .find(|x| x.name.ends_with("patch_embed.proj.weight"))
                .map_or(fan_in, |w| w.shape[1..].iter().product());
            uniform(&mut rng, 1.0 / (fan as f32).sqrt())
        } else if name.ends_with("weight_v") {
            uniform(&mut rng, 1.0 / (fan_in as f32).sqrt())
        } else if name.ends_with("weight_g") || (name.contains("norm") && name.ends_with("weight"))
        {
            vec![1.0; n]
        } else if name.ends_with(".bias") || name.ends_with("mask_token") {
            vec![0.0; n]
        } else if name.ends_with("gamma") {
            vec![init.layerscale; n]
        } else if let (HeadInit::FanIn, Some(layer)) = (init.head, head_mlp_layer(name)) {
            // mlp.0 and mlp.2 feed a GELU (He); mlp.4 is the bottleneck (LeCun).
            let gain = if layer == "4" { 1.0 } else { 2.0 };
            let std = (gain / fan_in as f32).sqrt();
            (0..n).map(|_| normal(&mut rng) * std).collect()
        } else if let (HeadInit::TruncNormal(std), Some(_)) = (init.head, head_mlp_layer(name)) {
            (0..n).map(|_| trunc_normal(&mut rng, std)).collect()
        } else if name.ends_with("cls_token") || name.ends_with("register_tokens") {
            (0..n).map(|_| normal(&mut rng) * token_std).collect()
        } else {
            (0..n).map(|_| trunc_normal(&mut rng, 0.02)).collect()
        };
        out.insert(e.name.clone(), v);
    }
    out
}

/// The index of a head MLP weight ("0", "2" or "4" of `…head.mlp.N.weight`), if `name` is one.
fn head_mlp_layer(name: &str) -> Option<&str> {
    let rest = name.strip_suffix(".weight")?;
    let (head, layer) = rest.rsplit_once(".mlp.")?;
    head.ends_with("head").then_some(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_of(v: &[f32]) -> f32 {
        let n = v.len() as f32;
        let mean = v.iter().sum::<f32>() / n;
        (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n).sqrt()
    }

    #[test]
    fn cls_and_register_tokens_start_at_each_family_s_scale() {
        let layout = ParamLayout::new(&[
            ("cls_token".into(), vec![1, 1, 384]),
            ("register_tokens".into(), vec![1, 4, 384]),
            ("mask_token".into(), vec![1, 384]),
        ]);
        for (rope, want) in [(false, 1e-6f32), (true, 0.02)] {
            let v = init_params(&layout, 7, &InitConfig::default(), token_std(rope));
            for name in ["cls_token", "register_tokens"] {
                let s = std_of(&v[name]);
                assert!(
                    (s / want - 1.0).abs() < 0.15,
                    "{name} with rope={rope}: std {s}, want {want}"
                );
            }
            assert!(v["mask_token"].iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn the_head_takes_the_truncated_normal_s_own_std() {
        let layout = ParamLayout::new(&[
            ("dino_head.mlp.0.weight".into(), vec![256, 128]),
            ("blocks.0.mlp.fc1.weight".into(), vec![256, 128]),
        ]);
        for std in [0.02f32, 0.1] {
            let init = InitConfig {
                head: HeadInit::TruncNormal(std),
                ..InitConfig::default()
            };
            let v = init_params(&layout, 3, &init, token_std(false));
            let head = std_of(&v["dino_head.mlp.0.weight"]);
            assert!(
                (head / std - 1.0).abs() < 0.05,
                "head std {head}, want {std}"
            );
            // The backbone's linear layers keep DINOv2's 0.02 whatever the head takes.
            let backbone = std_of(&v["blocks.0.mlp.fc1.weight"]);
            assert!(
                (backbone / 0.02 - 1.0).abs() < 0.05,
                "backbone std {backbone}"
            );
        }
    }
}
