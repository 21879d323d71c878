//! Turning maps into colours and blending them over the input image.

use image::{Rgb, RgbImage};

/// A colour scale for heat maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Colormap {
    /// Black through purple and orange to pale yellow; DINO's video frames use it.
    #[default]
    Inferno,
    /// Dark purple through teal to yellow; matplotlib's default, used for DINO's per-head maps.
    Viridis,
    /// Black to white.
    Gray,
}

/// Table positions (out of 255) of the control points: every 16th entry of the 256-entry
/// published tables plus the last, which keeps linear interpolation within about one
/// 8-bit step of the full table.
const STOP_AT: [f32; 17] = [
    0.0, 16.0, 32.0, 48.0, 64.0, 80.0, 96.0, 112.0, 128.0, 144.0, 160.0, 176.0, 192.0, 208.0,
    224.0, 240.0, 255.0,
];

/// matplotlib's `inferno` (van der Walt and Smith) at [`STOP_AT`].
const INFERNO: [[f32; 3]; 17] = [
    [0.001462, 0.000466, 0.013866],
    [0.042253, 0.028139, 0.141141],
    [0.129285, 0.047293, 0.290788],
    [0.238273, 0.036621, 0.396353],
    [0.341500, 0.062325, 0.429425],
    [0.441207, 0.099338, 0.431594],
    [0.540920, 0.134729, 0.415123],
    [0.640135, 0.171438, 0.381065],
    [0.735683, 0.215906, 0.330245],
    [0.822386, 0.275197, 0.266085],
    [0.894305, 0.353399, 0.193584],
    [0.946965, 0.449191, 0.115272],
    [0.978422, 0.557937, 0.034931],
    [0.987874, 0.675267, 0.065257],
    [0.974638, 0.797692, 0.206332],
    [0.947594, 0.917399, 0.410665],
    [0.988362, 0.998364, 0.644924],
];

/// matplotlib's `viridis` (van der Walt and Smith) at [`STOP_AT`].
const VIRIDIS: [[f32; 3]; 17] = [
    [0.267004, 0.004874, 0.329415],
    [0.282327, 0.094955, 0.417331],
    [0.278826, 0.175490, 0.483397],
    [0.258965, 0.251537, 0.524736],
    [0.229739, 0.322361, 0.545706],
    [0.199430, 0.387607, 0.554642],
    [0.172719, 0.448791, 0.557885],
    [0.149039, 0.508051, 0.557250],
    [0.127568, 0.566949, 0.550556],
    [0.120638, 0.625828, 0.533488],
    [0.157851, 0.683765, 0.501686],
    [0.246070, 0.738910, 0.452024],
    [0.369214, 0.788888, 0.382914],
    [0.515992, 0.831158, 0.294279],
    [0.678489, 0.863742, 0.189503],
    [0.845561, 0.887322, 0.099702],
    [0.993248, 0.906157, 0.143936],
];

fn to_u8(v: f32) -> u8 {
    byte(v * 255.0)
}

fn byte(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

impl Colormap {
    /// The colour at `t` in [0, 1]; values outside are clamped and NaN reads as 0.
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let table = match self {
            Colormap::Inferno => &INFERNO,
            Colormap::Viridis => &VIRIDIS,
            Colormap::Gray => {
                let g = to_u8(t);
                return [g, g, g];
            }
        };
        let pos = t * 255.0;
        let k = STOP_AT[1..STOP_AT.len() - 1]
            .iter()
            .take_while(|&&s| s <= pos)
            .count();
        let (a, b) = (STOP_AT[k], STOP_AT[k + 1]);
        let f = ((pos - a) / (b - a)).clamp(0.0, 1.0);
        let (lo, hi) = (table[k], table[k + 1]);
        [0, 1, 2].map(|c| to_u8(lo[c] + (hi[c] - lo[c]) * f))
    }
}

/// Colour a row-major `w × h` map, scaled so its smallest finite value gets the low end of
/// `cmap` and its largest the high end; constant maps, NaN and missing values get the low end.
pub fn colorize(map: &[f32], w: u32, h: u32, cmap: Colormap) -> RgbImage {
    let count = (w as usize).saturating_mul(h as usize);
    let values = &map[..count.min(map.len())];
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    // Ranges are taken in f64: f32 overflows for maps spanning more than f32::MAX.
    let range = f64::from(hi) - f64::from(lo);
    let scale = |v: f32| -> f32 {
        if v.is_finite() && range > 0.0 {
            ((f64::from(v) - f64::from(lo)) / range) as f32
        } else {
            0.0
        }
    };
    RgbImage::from_fn(w, h, |x, y| {
        let i = y as usize * w as usize + x as usize;
        Rgb(cmap.rgb(scale(values.get(i).copied().unwrap_or(f32::NAN))))
    })
}

/// Nearest source index for `dst` when `outp` positions cover `inp`.
fn nearest(dst: u32, inp: u32, outp: u32) -> u32 {
    ((u64::from(dst) * u64::from(inp)) / u64::from(outp.max(1))) as u32
}

/// Blend `heat` over `base` with opacity `alpha` (clamped to [0, 1]); a heat image of another
/// size is stretched to `base` with nearest neighbours.
pub fn overlay(base: &RgbImage, heat: &RgbImage, alpha: f32) -> RgbImage {
    let alpha = if alpha.is_nan() {
        0.0
    } else {
        alpha.clamp(0.0, 1.0)
    };
    if heat.width() == 0 || heat.height() == 0 {
        return base.clone();
    }
    let (bw, bh) = base.dimensions();
    RgbImage::from_fn(bw, bh, |x, y| {
        let b = base.get_pixel(x, y).0;
        let hp = heat
            .get_pixel(nearest(x, heat.width(), bw), nearest(y, heat.height(), bh))
            .0;
        Rgb([0, 1, 2].map(|c| byte(f32::from(b[c]) * (1.0 - alpha) + f32::from(hp[c]) * alpha)))
    })
}

/// Show a thresholded map on `base`: pixels whose cell of the row-major `mask_w × mask_h`
/// mask is kept stay as they are, the rest are scaled by `shade` (0 = black, 1 = unchanged).
/// Cells missing from a short mask count as not kept.
pub fn mask_overlay(
    base: &RgbImage,
    mask: &[bool],
    mask_w: u32,
    mask_h: u32,
    shade: f32,
) -> RgbImage {
    let shade = if shade.is_nan() {
        0.0
    } else {
        shade.clamp(0.0, 1.0)
    };
    let (bw, bh) = base.dimensions();
    RgbImage::from_fn(bw, bh, |x, y| {
        let p = base.get_pixel(x, y).0;
        let kept = mask_w > 0
            && mask_h > 0
            && mask
                .get(
                    nearest(y, mask_h, bh) as usize * mask_w as usize
                        + nearest(x, mask_w, bw) as usize,
                )
                .copied()
                .unwrap_or(false);
        if kept {
            Rgb(p)
        } else {
            Rgb(p.map(|v| byte(f32::from(v) * shade)))
        }
    })
}
