//! IEEE 754 half precision on the host: the conversions f16 tensors are uploaded and read
//! back through, and the CPU-side rounding that tolerances are reasoned with.

/// Rounds an f32 to the nearest f16 (ties to even; overflow to ±inf; NaN stays NaN), as bits.
pub fn from_f32(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        let nan = if man != 0 { 0x200 } else { 0 };
        return sign | 0x7c00 | nan;
    }
    // The exponent re-biased from 127 to 15.
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal half (or zero): shift the mantissa with its implicit bit into place.
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let mid = 1 << (shift - 1);
        let round = rem > mid || (rem == mid && half & 1 == 1);
        return sign | (half + round as u32) as u16;
    }
    let half = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    let round = rem > 0x1000 || (rem == 0x1000 && half & 1 == 1);
    // A carry out of the mantissa correctly bumps the exponent (up to inf).
    sign | (half + round as u32) as u16
}

/// Widens f16 bits to f32 (exact).
pub fn to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise the mantissa.
            let lead = m.leading_zeros() - 21;
            let m = (m << lead) & 0x3ff;
            sign | ((127 - 15 + 1 - lead) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Rounds every value through f16 and back.
pub fn round_trip(xs: &[f32]) -> Vec<f32> {
    xs.iter().map(|&x| to_f32(from_f32(x))).collect()
}

/// [`round_trip`] for loss-scaled gradients (the twin of `cast_checked`): values that would
/// round past f16's largest finite value, or are not finite, become 0, and the flag says whether
/// any did.
pub fn round_checked(xs: &[f32]) -> (Vec<f32>, bool) {
    let mut overflow = false;
    let out = xs
        .iter()
        .map(|&x| {
            let h = to_f32(from_f32(x));
            if h.is_finite() {
                h
            } else {
                overflow = true;
                0.0
            }
        })
        .collect();
    (out, overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_convert_exactly() {
        for (x, h) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (65504.0, 0x7bff),
            (6.103_515_6e-5, 0x0400),
            (5.960_464_5e-8, 0x0001),
            (0.333_333_34, 0x3555),
            (f32::INFINITY, 0x7c00),
            (1e6, 0x7c00),
        ] {
            assert_eq!(from_f32(x), h, "{x}");
        }
        assert!(to_f32(from_f32(f32::NAN)).is_nan());
    }

    #[test]
    fn every_half_round_trips_and_rounding_is_nearest_even() {
        for h in 0..=u16::MAX {
            let x = to_f32(h);
            if x.is_nan() {
                continue;
            }
            assert_eq!(from_f32(x), h, "{h:#06x}");
        }
        // 1 + 2^-11 is halfway between 1 and the next half: ties to the even 1.0.
        assert_eq!(from_f32(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(from_f32(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        // Halfway in the subnormal range.
        assert_eq!(from_f32(1.5 * 2f32.powi(-24)), 0x0002);
        assert_eq!(from_f32(0.5 * 2f32.powi(-24)), 0x0000);
    }
}
