//! Image decoding and preprocessing for the backbone.
//!
//! Pictures arrive as bytes (a file, a browser upload) in png, jpeg or webp, are decoded to 8-bit
//! RGB with the EXIF orientation applied, then resized, centre-cropped to a multiple of the patch
//! size and normalised with the ImageNet statistics the DINOv2 weights were trained with.

use std::io::Cursor;
use std::path::Path;

use ::image::error::UnsupportedErrorKind;
use ::image::imageops;
use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::data::resample::{reduce_box, reduce_box_raw, resize_window};

/// ImageNet per-channel mean (R, G, B) of pixels scaled to [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet per-channel standard deviation (R, G, B) of pixels scaled to [0, 1].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Largest picture `preprocess` produces, in pixels. Its f32 copy is 12 bytes a pixel, and a
/// thin strip asked for a large shorter side would otherwise upscale into gigabytes.
const MAX_PREPROCESSED_PIXELS: u64 = 1 << 26;

/// Why a picture could not be decoded or preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read from disk.
    #[error("{name}: cannot read: {cause}")]
    Read {
        /// The file.
        name: String,
        /// What the operating system said.
        cause: std::io::Error,
    },
    /// The bytes are not png, jpeg or webp.
    #[error("{name}: not a supported image (png, jpeg, webp)")]
    Unsupported {
        /// The file.
        name: String,
    },
    /// The format is known but this file uses a part of it the decoder lacks.
    #[error("{name}: unsupported image feature: {detail}")]
    UnsupportedFeature {
        /// The file.
        name: String,
        /// What the decoder could not handle.
        detail: String,
    },
    /// The bytes start like an image but do not decode.
    #[error("{name}: corrupt or truncated image: {detail}")]
    Corrupt {
        /// The file.
        name: String,
        /// What the decoder reported.
        detail: String,
    },
    /// No bytes, or a picture with no pixels.
    #[error("{name}: image is empty")]
    Empty {
        /// The file.
        name: String,
    },
    /// The picture is larger than the decoder's memory limit.
    #[error("{name}: image too large to decode: {detail}")]
    TooLarge {
        /// The file.
        name: String,
        /// The limit that was hit.
        detail: String,
    },
    /// After resizing and cropping, less than one patch is left.
    #[error(
        "a {width}×{height} image becomes {resized_width}×{resized_height} after resizing \
         ({resize}), smaller than one {patch}×{patch} patch"
    )]
    SmallerThanPatch {
        /// Width before preprocessing.
        width: usize,
        /// Height before preprocessing.
        height: usize,
        /// Width after resizing and the first crop.
        resized_width: usize,
        /// Height after resizing and the first crop.
        resized_height: usize,
        /// The resize that was asked for.
        resize: Resize,
        /// The patch size.
        patch: usize,
    },
    /// The resized picture would exceed the preprocessing size limit.
    #[error(
        "a {width}×{height} image would become {resized_width}×{resized_height} after resizing \
         ({resize}), more than {limit} pixels"
    )]
    ResizedTooLarge {
        /// Width before preprocessing.
        width: usize,
        /// Height before preprocessing.
        height: usize,
        /// Width the resize asked for.
        resized_width: u128,
        /// Height the resize asked for.
        resized_height: u128,
        /// The resize that was asked for.
        resize: Resize,
        /// The most pixels allowed.
        limit: u64,
    },
    /// A patch size of zero was asked for.
    #[error("the patch size must be at least 1")]
    ZeroPatch,
    /// Images of different sizes, or with data not matching their size, were batched.
    #[error("cannot batch image {index}: {detail}")]
    Batch {
        /// Position of the offending image in the batch.
        index: usize,
        /// How it differs.
        detail: String,
    },
}

/// How `preprocess` sizes a picture before cutting it into patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Shorter side to N, centre-crop N×N, then centre-crop down to a multiple of the patch.
    CenterCrop(usize),
    /// Shorter side to N keeping the aspect, then centre-crop to multiples of the patch.
    ShorterSide(usize),
    /// Keep the size and centre-crop each side down to a multiple of the patch.
    None,
}

impl std::fmt::Display for Resize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resize::CenterCrop(n) => write!(f, "shorter side to {n}, then a centre {n}×{n} crop"),
            Resize::ShorterSide(n) => write!(f, "shorter side to {n}"),
            Resize::None => write!(f, "kept as it is"),
        }
    }
}

/// A picture ready for the backbone.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// `[3, height, width]`, channel-first, ImageNet-normalised.
    pub data: Vec<f32>,
    /// Height in pixels, a multiple of the patch size.
    pub height: usize,
    /// Width in pixels, a multiple of the patch size.
    pub width: usize,
    /// The resized and cropped picture before normalisation, for overlays.
    pub rgb: RgbImage,
}

/// Longest side a picture may have.
pub const MAX_SIDE: u32 = 16_384;
/// Pixels a picture may have unless `DINOSCOPE_MAX_PIXELS` says otherwise.
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// The pixel budget of one picture: `DINOSCOPE_MAX_PIXELS`, or [`DEFAULT_MAX_PIXELS`].
pub fn max_pixels() -> u64 {
    let Ok(v) = std::env::var("DINOSCOPE_MAX_PIXELS") else {
        return DEFAULT_MAX_PIXELS;
    };
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => n,
        _ => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                log::warn!(
                    "DINOSCOPE_MAX_PIXELS={v:?} is not a whole number of pixels above 0; \
                     using {DEFAULT_MAX_PIXELS}"
                )
            });
            DEFAULT_MAX_PIXELS
        }
    }
}

/// Reads an image file and decodes it with [`decode_image`].
pub fn load_image(path: &Path) -> Result<RgbImage, ImageError> {
    load_image_reduced(path, |_, _| 1)
}

/// Reads an image file and decodes it with [`decode_image_reduced`].
pub fn load_image_reduced(
    path: &Path,
    factor: impl Fn(u32, u32) -> u32,
) -> Result<RgbImage, ImageError> {
    let name = path.display().to_string();
    let bytes = read_picture_file(path).map_err(|cause| ImageError::Read {
        name: name.clone(),
        cause,
    })?;
    decode_image_reduced(&bytes, &name, factor)
}

/// Largest picture file read, in bytes: far past any picture within the pixel limits.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// A picture file's bytes: a regular file (a pipe would block the reader, a device never end)
/// of at most [`MAX_FILE_BYTES`].
pub fn read_picture_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a folder, pipe or device)",
        ));
    }
    let too_big = || {
        std::io::Error::other(format!(
            "larger than {} GiB, more than any picture within the pixel limit",
            MAX_FILE_BYTES >> 30
        ))
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Decodes png, jpeg or webp bytes (format sniffed) to upright 8-bit RGB; `name` labels errors.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage, ImageError> {
    decode_image_reduced(bytes, name, |_, _| 1)
}

/// Largest decoding buffer a thread keeps for its next picture, in bytes.
const KEPT_SCRATCH: usize = 64 << 20;

thread_local! {
    /// Where [`decode_image_reduced`] decodes pictures it shrinks right away, kept from one
    /// picture to the next.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`decode_image`] shrunk at once by the whole factor `factor(width, height)` returns for the
/// upright size ([`reduce_box`], taken before the EXIF orientation is applied). 8-bit RGB
/// pictures so shrunk are decoded into a buffer the calling thread keeps for its next one: a
/// 12-megapixel photo's 36 MB would otherwise be mapped and zeroed by the kernel afresh for each
/// picture, which took a third of the loader's time on phone photos.
pub fn decode_image_reduced(
    bytes: &[u8],
    name: &str,
    factor: impl Fn(u32, u32) -> u32,
) -> Result<RgbImage, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty { name: name.into() });
    }
    // Reading from memory cannot fail, but the signature still returns an io::Error.
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_error(name, ::image::ImageError::IoError(e)))?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => f,
        _ => return Err(ImageError::Unsupported { name: name.into() }),
    };
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes, name)?;
    }
    let budget = max_pixels();
    let too_large = |w: u32, h: u32| {
        (w > MAX_SIDE || h > MAX_SIDE || w as u64 * h as u64 > budget).then(|| {
            ImageError::TooLarge {
                name: name.into(),
                detail: format!(
                    "{w}×{h} pixels; pictures may have at most {MAX_SIDE} pixels a side and \
                     {budget} pixels in all (DINOSCOPE_MAX_PIXELS sets the latter)"
                ),
            }
        })
    };
    // A PNG's size, from its first chunk: the decoder's own limit would answer first, saying
    // only "Memory limit exceeded" (its limits stay on while it reads the header).
    if let (ImageFormat::Png, Some(ihdr)) = (format, bytes.get(12..24)) {
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if &ihdr[..4] == b"IHDR" {
            if let Some(e) = too_large(be(&ihdr[4..8]), be(&ihdr[8..12])) {
                return Err(e);
            }
        }
    }
    let mut decoder = reader.into_decoder().map_err(|e| decode_error(name, e))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(ImageError::Empty { name: name.into() });
    }
    if let Some(e) = too_large(w, h) {
        return Err(e);
    }
    // The header passed; bound what the decoder itself may allocate too (it may hold a 16-bit
    // RGBA copy beside the 8-bit RGB result).
    let mut limits = ::image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(budget.saturating_mul(12));
    decoder
        .set_limits(limits)
        .map_err(|e| decode_error(name, e))?;
    // Orientation is metadata: a damaged EXIF block should not cost the picture itself, and if
    // the pixels are damaged too the decode below says so.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let turned = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let f = if turned { factor(h, w) } else { factor(w, h) }.max(1);
    let rgb = if f > 1 && decoder.color_type() == ::image::ColorType::Rgb8 {
        let n = decoder.total_bytes() as usize;
        SCRATCH
            .with(|scratch| {
                let mut buf = scratch.borrow_mut();
                buf.resize(n, 0);
                let read = decoder.read_image(&mut buf[..n]);
                let small = read.map(|()| reduce_box_raw(&buf[..n], w, h, f));
                if buf.capacity() > KEPT_SCRATCH {
                    *buf = Vec::new();
                }
                small
            })
            .map_err(|e| decode_error(name, e))?
    } else {
        let decoded = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(name, e))?;
        let rgb = flatten_to_rgb8(decoded);
        if f > 1 {
            reduce_box(&rgb, f)
        } else {
            rgb
        }
    };
    let mut upright = DynamicImage::ImageRgb8(rgb);
    upright.apply_orientation(orientation);
    Ok(upright.into_rgb8())
}

/// The JPEG decoder is lenient and fills a cut-off scan with grey instead of failing, so an
/// interrupted download would pass as a picture. A complete file has an end-of-image marker
/// after its first scan; anything after that (motion-photo video, vendor trailers) is ignored.
fn check_jpeg_complete(bytes: &[u8], name: &str) -> Result<(), ImageError> {
    let corrupt = |detail: &str| ImageError::Corrupt {
        name: name.into(),
        detail: detail.into(),
    };
    // Walk the header segments to the start of scan. Searching the whole file for the
    // end-of-image marker would find the one closing an embedded EXIF thumbnail.
    let mut pos = 2;
    let scan_start = loop {
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&first), Some(&marker)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            return Err(corrupt("the file ends inside its header"));
        };
        if first != 0xFF {
            // Not a layout this check understands; the decoder judges it.
            return Ok(());
        }
        match marker {
            0xDA => break pos,
            0xD9 => return Err(corrupt("end of image before any scan")),
            // Frames other than baseline, extended and progressive Huffman (0xC0–0xC2), and
            // the hierarchical process (DHP 0xDE, EXP 0xDF, differential frames 0xC5–0xC7,
            // 0xCD–0xCF): the decoder lacks them and would call the file damaged.
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xDE | 0xDF => {
                let kind = match marker {
                    0xC3 => "lossless",
                    0xC5..=0xC7 | 0xDE | 0xDF => "hierarchical",
                    _ => "arithmetic-coded",
                };
                return Err(ImageError::UnsupportedFeature {
                    name: name.into(),
                    detail: format!(
                        "a {kind} JPEG (frame marker 0xFF{marker:02X}); only baseline and \
                         progressive JPEGs are read (re-save it as one, or as PNG)"
                    ),
                });
            }
            0x01 | 0xD0..=0xD8 => pos += 2,
            _ => {
                let (Some(&hi), Some(&lo)) = (bytes.get(pos + 2), bytes.get(pos + 3)) else {
                    return Err(corrupt("the file ends inside its header"));
                };
                pos += 2 + usize::from(u16::from_be_bytes([hi, lo]));
            }
        }
    };
    // Inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so
    // 0xFF 0xD9 there is the real end of image.
    let complete = bytes[scan_start..].windows(2).any(|w| w == [0xFF, 0xD9]);
    if complete {
        Ok(())
    } else {
        Err(corrupt("no end-of-image marker (the file is cut off)"))
    }
}

/// Transparent regions are composited over white rather than having alpha dropped: encoders
/// leave arbitrary colour (often black) under fully transparent pixels, and a cut-out object on
/// white is what a viewer shows and what the backbone has seen in product-style photos. Opaque
/// pixels are unchanged, so ordinary photos match a plain RGB conversion exactly.
fn flatten_to_rgb8(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    // 16 bits keeps full precision for both 8- and 16-bit sources (8-bit values scale exactly).
    let rgba = img.into_rgba16();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let alpha = f32::from(src[3]) / 65535.0;
        for c in 0..3 {
            let v = f32::from(src[c]) / 65535.0 * alpha + (1.0 - alpha);
            dst[c] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

fn decode_error(name: &str, e: ::image::ImageError) -> ImageError {
    let name = name.to_string();
    match e {
        ::image::ImageError::Unsupported(u) => match u.kind() {
            UnsupportedErrorKind::Format(_) => ImageError::Unsupported { name },
            _ => ImageError::UnsupportedFeature {
                name,
                detail: u.to_string(),
            },
        },
        ::image::ImageError::Limits(l) => ImageError::TooLarge {
            name,
            detail: l.to_string(),
        },
        other => ImageError::Corrupt {
            name,
            detail: other.to_string(),
        },
    }
}

/// Resizes, centre-crops to a multiple of `patch` and normalises a picture for the backbone.
pub fn preprocess(
    img: &RgbImage,
    resize: Resize,
    patch: usize,
) -> Result<Preprocessed, ImageError> {
    if patch == 0 {
        return Err(ImageError::ZeroPatch);
    }
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (resized_w, resized_h) = match resize {
        Resize::CenterCrop(n) | Resize::ShorterSide(n) => shorter_side_to(width, height, n),
        Resize::None => (width as u128, height as u128),
    };
    let limit = MAX_PREPROCESSED_PIXELS;
    let pixels = resized_w.checked_mul(resized_h);
    if pixels.is_none_or(|p| p > u128::from(limit)) {
        return Err(ImageError::ResizedTooLarge {
            width,
            height,
            resized_width: resized_w,
            resized_height: resized_h,
            resize,
            limit,
        });
    }
    // Below the limit both sides fit in u32 (and usize).
    let (resized_w, resized_h) = (resized_w as usize, resized_h as usize);
    let (first_w, first_h) = match resize {
        Resize::CenterCrop(n) => (n.min(resized_w), n.min(resized_h)),
        _ => (resized_w, resized_h),
    };
    let (out_w, out_h) = (first_w - first_w % patch, first_h - first_h % patch);
    if out_w == 0 || out_h == 0 {
        return Err(ImageError::SmallerThanPatch {
            width,
            height,
            resized_width: first_w,
            resized_height: first_h,
            resize,
            patch,
        });
    }

    let resized_owned;
    let resized = if (resized_w, resized_h) == (width, height) {
        img
    } else {
        // Catmull-Rom with the filter widened when shrinking is PIL's antialiased bicubic, the
        // filter torchvision uses on PIL images in the DINOv2 transforms.
        resized_owned = resize_window(
            img,
            (0, 0, width as u32, height as u32),
            resized_w as u32,
            resized_h as u32,
        );
        &resized_owned
    };
    // Two centre crops in sequence, as the transforms chain them, so offsets round the same way.
    let x = centre_offset(resized_w, first_w) + centre_offset(first_w, out_w);
    let y = centre_offset(resized_h, first_h) + centre_offset(first_h, out_h);
    let rgb =
        imageops::crop_imm(resized, x as u32, y as u32, out_w as u32, out_h as u32).to_image();

    let plane = out_w * out_h;
    let mut data = vec![0.0f32; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (f32::from(px[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    Ok(Preprocessed {
        data,
        height: out_h,
        width: out_w,
        rgb,
    })
}

/// The size after scaling the shorter side to `n`. The longer side is truncated, not rounded,
/// as torchvision's `Resize(n)` does, so crops line up with the reference pipeline.
fn shorter_side_to(width: usize, height: usize, n: usize) -> (u128, u128) {
    let (w, h, n) = (width as u128, height as u128, n as u128);
    if w == 0 || h == 0 {
        (0, 0)
    } else if w <= h {
        (n, h * n / w)
    } else {
        (w * n / h, n)
    }
}

/// Offset of a centred window of `kept` in `total`, rounding half to even as torchvision's
/// `center_crop` does (it uses Python's `round`).
fn centre_offset(total: usize, kept: usize) -> usize {
    let diff = total - kept;
    let half = diff / 2;
    if diff % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Stacks same-size preprocessed images into one `[B, 3, H, W]` buffer (empty for no images).
pub fn batch(images: &[Preprocessed]) -> Result<Vec<f32>, ImageError> {
    let Some(first) = images.first() else {
        return Ok(Vec::new());
    };
    let mut total = 0usize;
    for (index, im) in images.iter().enumerate() {
        if (im.width, im.height) != (first.width, first.height) {
            return Err(ImageError::Batch {
                index,
                detail: format!(
                    "it is {}×{} but image 0 is {}×{}",
                    im.width, im.height, first.width, first.height
                ),
            });
        }
        let expected = im
            .width
            .checked_mul(im.height)
            .and_then(|p| p.checked_mul(3));
        if expected != Some(im.data.len()) {
            return Err(ImageError::Batch {
                index,
                detail: format!(
                    "it holds {} values, not 3×{}×{}",
                    im.data.len(),
                    im.height,
                    im.width
                ),
            });
        }
        total += im.data.len();
    }
    let mut out = Vec::with_capacity(total);
    for im in images {
        out.extend_from_slice(&im.data);
    }
    Ok(out)
}
