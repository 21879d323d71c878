//! Image decoding and preprocessing: formats, colour types, EXIF orientation, bad input, the
//! patch-multiple sizes of every resize mode, normalisation and the bundled photos. No GPU.

use std::path::{Path, PathBuf};

use dinoscope::data::image::{
    batch, decode_image, decode_image_reduced, load_image, preprocess, ImageError, Preprocessed,
    Resize, IMAGENET_MEAN, IMAGENET_STD,
};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageBuffer, Rgb, RgbImage, RgbaImage};

/// A picture whose every pixel differs, so a transposed or shifted decode cannot pass.
fn gradient(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 7 % 256) as u8,
            (y * 11 % 256) as u8,
            ((x + y) * 3 % 256) as u8,
        ])
    })
}

fn png_bytes(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_with_encoder(PngEncoder::new(&mut out)).unwrap();
    out
}

fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 95)
        .encode_image(img)
        .unwrap();
    out
}

fn webp_bytes(img: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_with_encoder(WebPEncoder::new_lossless(&mut out))
        .unwrap();
    out
}

fn max_abs_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn err_text(r: Result<RgbImage, ImageError>) -> String {
    match r {
        Ok(img) => panic!("expected an error, decoded {:?}", img.dimensions()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn png_jpeg_and_webp_decode() {
    let img = gradient(37, 23);
    let png = decode_image(&png_bytes(&DynamicImage::ImageRgb8(img.clone())), "a.png").unwrap();
    assert_eq!(png, img, "png is lossless");
    let webp = decode_image(&webp_bytes(&DynamicImage::ImageRgb8(img.clone())), "a.webp").unwrap();
    assert_eq!(webp, img, "lossless webp is lossless");

    // A smooth picture, so quality-95 JPEG stays within a few levels everywhere.
    let smooth = RgbImage::from_fn(40, 24, |x, y| Rgb([(x * 6) as u8, (y * 10) as u8, 128]));
    let jpeg = decode_image(&jpeg_bytes(&smooth), "a.jpg").unwrap();
    assert_eq!(jpeg.dimensions(), (40, 24));
    let diff = max_abs_diff(&jpeg, &smooth);
    assert!(diff <= 12, "jpeg differs by {diff} levels");
}

#[test]
fn format_comes_from_the_content_not_the_name() {
    let img = gradient(9, 5);
    let decoded = decode_image(
        &png_bytes(&DynamicImage::ImageRgb8(img.clone())),
        "really-a-png.jpg",
    )
    .unwrap();
    assert_eq!(decoded, img);
}

#[test]
fn grey_becomes_rgb() {
    let grey = GrayImage::from_fn(6, 4, |x, y| image::Luma([(x * 40 + y) as u8]));
    for (bytes, name) in [
        (
            png_bytes(&DynamicImage::ImageLuma8(grey.clone())),
            "grey.png",
        ),
        (
            webp_bytes(&DynamicImage::ImageLuma8(grey.clone())),
            "grey.webp",
        ),
    ] {
        let rgb = decode_image(&bytes, name).unwrap();
        assert_eq!(rgb.dimensions(), (6, 4), "{name}");
        for (x, y, p) in rgb.enumerate_pixels() {
            let g = grey.get_pixel(x, y)[0];
            assert_eq!(p.0, [g, g, g], "{name} at ({x}, {y})");
        }
    }
}

#[test]
fn alpha_is_composited_over_white() {
    // Opaque red, half-transparent black, fully transparent black (hidden colour must not show).
    let rgba = RgbaImage::from_fn(3, 1, |x, _| match x {
        0 => image::Rgba([255, 0, 0, 255]),
        1 => image::Rgba([0, 0, 0, 128]),
        _ => image::Rgba([0, 0, 0, 0]),
    });
    let expected_half = (255.0f32 * (1.0 - 128.0 / 255.0)).round() as u8;
    for (bytes, name) in [
        (
            png_bytes(&DynamicImage::ImageRgba8(rgba.clone())),
            "rgba.png",
        ),
        (
            webp_bytes(&DynamicImage::ImageRgba8(rgba.clone())),
            "rgba.webp",
        ),
    ] {
        let rgb = decode_image(&bytes, name).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0], "{name}");
        assert_eq!(rgb.get_pixel(1, 0).0, [expected_half; 3], "{name}");
        assert_eq!(rgb.get_pixel(2, 0).0, [255, 255, 255], "{name}");
    }

    let grey_alpha = GrayAlphaImage::from_fn(2, 1, |x, _| {
        image::LumaA([50, if x == 0 { 255 } else { 0 }])
    });
    let rgb = decode_image(&png_bytes(&DynamicImage::ImageLumaA8(grey_alpha)), "la.png").unwrap();
    assert_eq!(rgb.get_pixel(0, 0).0, [50, 50, 50]);
    assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
}

#[test]
fn sixteen_bit_becomes_eight_bit() {
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(4, 2, |x, y| {
        Rgb([(x * 257 * 60) as u16, (y * 65535) as u16, 32896])
    });
    let rgb = decode_image(&png_bytes(&DynamicImage::ImageRgb16(rgb16)), "deep.png").unwrap();
    for (x, y, p) in rgb.enumerate_pixels() {
        assert_eq!(p.0, [(x * 60) as u8, (y * 255) as u8, 128], "({x}, {y})");
    }

    let grey16: ImageBuffer<image::Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(2, 1, |x, _| image::Luma([if x == 0 { 0 } else { 65535 }]));
    let rgb = decode_image(&png_bytes(&DynamicImage::ImageLuma16(grey16)), "grey16.png").unwrap();
    assert_eq!(rgb.get_pixel(0, 0).0, [0, 0, 0]);
    assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);

    let rgba16: ImageBuffer<image::Rgba<u16>, Vec<u16>> =
        ImageBuffer::from_fn(1, 1, |_, _| image::Rgba([0, 0, 0, 0]));
    let rgb = decode_image(&png_bytes(&DynamicImage::ImageRgba16(rgba16)), "rgba16.png").unwrap();
    assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
}

/// A JPEG with an APP1 Exif segment carrying only the orientation tag, placed right after SOI.
fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let plain = jpeg_bytes(img);
    assert_eq!(&plain[..2], &[0xFF, 0xD8], "the encoder starts with SOI");

    // Big-endian TIFF header, one IFD at offset 8 with a single SHORT entry, no next IFD.
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\x00\x2A");
    tiff.extend_from_slice(&8u32.to_be_bytes());
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes());

    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);
    let length = u16::try_from(payload.len() + 2).unwrap();

    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&plain[2..]);
    out
}

/// White 32×16 with a red 8×8 block in the top-left corner (aligned to JPEG blocks, so the
/// block's centre survives compression and chroma subsampling).
fn marked_landscape() -> RgbImage {
    RgbImage::from_fn(32, 16, |x, y| {
        if x < 8 && y < 8 {
            Rgb([255, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    })
}

fn is_red(p: &Rgb<u8>) -> bool {
    p[0] > 200 && p[1] < 80 && p[2] < 80
}

fn is_white(p: &Rgb<u8>) -> bool {
    p.0.iter().all(|&v| v > 200)
}

#[test]
fn exif_orientation_is_applied() {
    let img = marked_landscape();

    // Without the tag the corner stays where it is.
    let plain = decode_image(&jpeg_with_orientation(&img, 1), "upright.jpg").unwrap();
    assert_eq!(plain.dimensions(), (32, 16));
    assert!(is_red(plain.get_pixel(3, 3)));

    // 6: the picture is shown rotated 90° clockwise, so top-left moves to top-right.
    let cw = decode_image(&jpeg_with_orientation(&img, 6), "rotated6.jpg").unwrap();
    assert_eq!(cw.dimensions(), (16, 32), "width and height swap");
    assert!(is_red(cw.get_pixel(12, 3)), "{:?}", cw.get_pixel(12, 3));
    assert!(is_white(cw.get_pixel(3, 3)), "{:?}", cw.get_pixel(3, 3));

    // 8: rotated 90° counter-clockwise, so top-left moves to bottom-left.
    let ccw = decode_image(&jpeg_with_orientation(&img, 8), "rotated8.jpg").unwrap();
    assert_eq!(ccw.dimensions(), (16, 32), "width and height swap");
    assert!(is_red(ccw.get_pixel(3, 28)), "{:?}", ccw.get_pixel(3, 28));
    assert!(is_white(ccw.get_pixel(3, 3)), "{:?}", ccw.get_pixel(3, 3));
}

/// Decoding while shrinking gives what decoding and then shrinking gives, on every decoder path
/// (8-bit RGB into the reused buffer; grey and alpha through the general one), and the factor is
/// asked for with the upright size.
#[test]
fn decoding_shrunk_equals_shrinking_the_decoded_picture() {
    use dinoscope::data::resample::reduce_box;
    let img = gradient(61, 34);
    let grey = GrayImage::from_fn(61, 34, |x, y| image::Luma([(x * 3 + y * 5) as u8]));
    let rgba = RgbaImage::from_fn(61, 34, |x, y| {
        image::Rgba([(x * 4) as u8, (y * 7) as u8, 90, (x * y % 256) as u8])
    });
    let cases = [
        ("rgb.png", png_bytes(&DynamicImage::ImageRgb8(img.clone()))),
        ("rgb.jpg", jpeg_bytes(&img)),
        (
            "rgb.webp",
            webp_bytes(&DynamicImage::ImageRgb8(img.clone())),
        ),
        ("grey.png", png_bytes(&DynamicImage::ImageLuma8(grey))),
        ("alpha.png", png_bytes(&DynamicImage::ImageRgba8(rgba))),
    ];
    for (name, bytes) in &cases {
        let full = decode_image(bytes, name).unwrap();
        for f in [1, 2, 3, 7, 100] {
            let asked = std::cell::Cell::new((0, 0));
            let shrunk = decode_image_reduced(bytes, name, |w, h| {
                asked.set((w, h));
                f
            })
            .unwrap();
            assert_eq!(asked.get(), (61, 34), "{name}");
            assert_eq!(shrunk, reduce_box(&full, f), "{name} by {f}");
        }
    }
    // Turned by EXIF: the factor sees the upright size, and the red corner still moves.
    let bytes = jpeg_with_orientation(&marked_landscape(), 6);
    let asked = std::cell::Cell::new((0, 0));
    let cw = decode_image_reduced(&bytes, "rotated6.jpg", |w, h| {
        asked.set((w, h));
        2
    })
    .unwrap();
    assert_eq!(asked.get(), (16, 32));
    assert_eq!(cw.dimensions(), (8, 16));
    assert!(is_red(cw.get_pixel(6, 1)), "{:?}", cw.get_pixel(6, 1));
    assert!(is_white(cw.get_pixel(1, 1)), "{:?}", cw.get_pixel(1, 1));
    // Errors are the same errors.
    assert_eq!(
        err_text(decode_image_reduced(
            &bytes[..bytes.len() / 2],
            "cut.jpg",
            |_, _| 2
        )),
        err_text(decode_image(&bytes[..bytes.len() / 2], "cut.jpg"))
    );
}

#[test]
fn corrupt_bytes_name_the_file() {
    // Not an image at all.
    let text = err_text(decode_image(b"hello, this is not a picture", "notes.txt"));
    assert!(text.contains("notes.txt"), "{text}");
    assert!(
        text.contains("not a supported image (png, jpeg, webp)"),
        "{text}"
    );

    // A format the crate recognises but does not decode here.
    let gif = err_text(decode_image(
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
        "anim.gif",
    ));
    assert!(
        gif.contains("anim.gif") && gif.contains("not a supported image"),
        "{gif}"
    );

    // Right signature, garbage after it.
    for (mut bytes, name) in [
        (
            png_bytes(&DynamicImage::ImageRgb8(gradient(20, 20))),
            "broken.png",
        ),
        (jpeg_bytes(&gradient(20, 20)), "broken.jpg"),
        (
            webp_bytes(&DynamicImage::ImageRgb8(gradient(20, 20))),
            "broken.webp",
        ),
    ] {
        for b in &mut bytes[12..] {
            *b = b.wrapping_mul(31).wrapping_add(7);
        }
        let text = err_text(decode_image(&bytes, name));
        assert!(text.contains(name), "{text}");
    }

    let empty = err_text(decode_image(&[], "nothing.png"));
    assert!(
        empty.contains("nothing.png") && empty.contains("image is empty"),
        "{empty}"
    );
}

/// JPEGs in the coding processes the decoder lacks (their frame marker put in place of the
/// baseline one) are named as such, not called damaged.
#[test]
fn lossless_and_arithmetic_jpegs_are_named_unsupported() {
    let baseline = jpeg_bytes(&gradient(20, 20));
    // The baseline frame header, found by walking the header's segments.
    let mut pos = 2;
    while baseline[pos + 1] != 0xC0 {
        assert_ne!(baseline[pos + 1], 0xDA, "no baseline frame header");
        pos += 2 + usize::from(u16::from_be_bytes([baseline[pos + 2], baseline[pos + 3]]));
    }
    for (marker, kind) in [
        (0xC3, "lossless"),
        (0xC9, "arithmetic-coded"),
        (0xCA, "arithmetic-coded"),
        (0xC5, "hierarchical"),
        // A hierarchical file opens with its DHP segment (laid out as a frame header).
        (0xDE, "hierarchical"),
    ] {
        let mut bytes = baseline.clone();
        bytes[pos + 1] = marker;
        let text = err_text(decode_image(&bytes, "scan.jpg"));
        assert!(
            text.contains("scan.jpg: unsupported image feature")
                && text.contains(&format!("a {kind} JPEG")),
            "{marker:X}: {text}"
        );
    }
    assert!(decode_image(&baseline, "scan.jpg").is_ok());
}

#[test]
fn truncated_files_name_the_file() {
    let img = gradient(64, 48);
    for (bytes, name) in [
        (png_bytes(&DynamicImage::ImageRgb8(img.clone())), "cut.png"),
        (jpeg_bytes(&img), "cut.jpg"),
        (
            webp_bytes(&DynamicImage::ImageRgb8(img.clone())),
            "cut.webp",
        ),
    ] {
        // A PNG cut only inside its 12-byte IEND trailer still holds every pixel and decodes, so
        // the cuts stay inside the data; JPEG's last two bytes are its end-of-image marker.
        let cuts = [bytes.len() / 3, bytes.len() * 2 / 3, bytes.len() - 2];
        let cuts = if name.ends_with("png") {
            &cuts[..2]
        } else {
            &cuts[..]
        };
        for &keep in cuts {
            let Err(e) = decode_image(&bytes[..keep], name) else {
                panic!("{name} cut to {keep} of {} bytes decoded", bytes.len());
            };
            let text = e.to_string();
            assert!(text.contains(name), "{name} cut to {keep}: {text}");
            assert!(
                text.contains("corrupt or truncated image"),
                "{name} cut to {keep}: {text}"
            );
        }
    }
}

#[test]
fn load_image_reads_files_and_names_missing_ones() {
    let dir = std::env::temp_dir().join(format!("dinoscope-image-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("picture.webp");
    let img = gradient(12, 7);
    std::fs::write(&path, webp_bytes(&DynamicImage::ImageRgb8(img.clone()))).unwrap();
    assert_eq!(load_image(&path).unwrap(), img);
    std::fs::remove_dir_all(&dir).unwrap();

    let missing = dir.join("missing.png");
    let text = err_text(load_image(&missing));
    assert!(
        text.contains("missing.png") && text.contains("cannot read"),
        "{text}"
    );
}

fn sizes(img: &RgbImage, resize: Resize, patch: usize) -> (usize, usize) {
    let p = preprocess(img, resize, patch).unwrap();
    assert_eq!(p.data.len(), 3 * p.height * p.width);
    assert_eq!(p.rgb.dimensions(), (p.width as u32, p.height as u32));
    assert_eq!(p.width % patch, 0);
    assert_eq!(p.height % patch, 0);
    (p.width, p.height)
}

#[test]
fn every_resize_mode_gives_patch_multiples() {
    let landscape = gradient(500, 375);
    let portrait = gradient(375, 500);

    assert_eq!(sizes(&landscape, Resize::CenterCrop(224), 14), (224, 224));
    assert_eq!(sizes(&portrait, Resize::CenterCrop(224), 14), (224, 224));
    // 200 is not a multiple of 16, so the square is cropped once more.
    assert_eq!(sizes(&landscape, Resize::CenterCrop(200), 16), (192, 192));
    assert_eq!(sizes(&landscape, Resize::CenterCrop(230), 14), (224, 224));

    // 500×375 → 298×224, cropped to 294×224 (21 and 16 patches).
    assert_eq!(sizes(&landscape, Resize::ShorterSide(224), 14), (294, 224));
    assert_eq!(sizes(&portrait, Resize::ShorterSide(224), 14), (224, 294));
    // 500×375 → 682×512, cropped to 672×504.
    assert_eq!(sizes(&landscape, Resize::ShorterSide(512), 14), (672, 504));

    assert_eq!(sizes(&landscape, Resize::None, 14), (490, 364));
    assert_eq!(sizes(&landscape, Resize::None, 1), (500, 375));
    assert_eq!(sizes(&gradient(14, 14), Resize::None, 14), (14, 14));
}

#[test]
fn crops_are_centred() {
    // Resize::None only crops, so the kept window can be checked pixel for pixel: 500 − 490 = 10
    // leaves 5 on each side, 375 − 364 = 11 splits 6 / 5 (half rounded to even, as torchvision).
    let img = gradient(500, 375);
    let p = preprocess(&img, Resize::None, 14).unwrap();
    assert_eq!(p.rgb.get_pixel(0, 0), img.get_pixel(5, 6));
    assert_eq!(p.rgb.get_pixel(489, 363), img.get_pixel(494, 369));
}

#[test]
fn too_small_images_and_zero_patches_are_errors() {
    let img = gradient(20, 10);
    let err = preprocess(&img, Resize::None, 14).unwrap_err().to_string();
    assert!(err.contains("20×10") && err.contains("14×14"), "{err}");

    let err = preprocess(&gradient(500, 375), Resize::CenterCrop(8), 14)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("500×375") && err.contains("8×8") && err.contains("14×14"),
        "{err}"
    );

    let err = preprocess(&gradient(500, 375), Resize::ShorterSide(0), 14).unwrap_err();
    assert!(matches!(err, ImageError::SmallerThanPatch { .. }), "{err}");

    let err = preprocess(&img, Resize::None, 0).unwrap_err();
    assert!(matches!(err, ImageError::ZeroPatch), "{err}");

    // A thin strip asked for a huge shorter side is refused instead of allocating gigabytes.
    let err = preprocess(&gradient(1, 4000), Resize::ShorterSide(100_000), 14).unwrap_err();
    assert!(matches!(err, ImageError::ResizedTooLarge { .. }), "{err}");
    let err = preprocess(&img, Resize::ShorterSide(usize::MAX), 14).unwrap_err();
    assert!(matches!(err, ImageError::ResizedTooLarge { .. }), "{err}");
}

#[test]
fn white_normalises_to_one_minus_mean_over_std() {
    let white = RgbImage::from_pixel(50, 30, Rgb([255, 255, 255]));
    let p = preprocess(&white, Resize::ShorterSide(28), 14).unwrap();
    let plane = p.height * p.width;
    for c in 0..3 {
        let expected = (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        for &v in &p.data[c * plane..(c + 1) * plane] {
            assert!(
                (v - expected).abs() < 1e-6,
                "channel {c}: {v} vs {expected}"
            );
        }
    }
}

#[test]
fn data_is_channel_first() {
    let img = gradient(28, 14);
    let p = preprocess(&img, Resize::None, 14).unwrap();
    let (h, w) = (p.height, p.width);
    for (x, y) in [(0usize, 0usize), (27, 0), (5, 13), (27, 13)] {
        let px = img.get_pixel(x as u32, y as u32);
        for c in 0..3 {
            let expected = (f32::from(px[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert_eq!(
                p.data[c * h * w + y * w + x],
                expected,
                "c {c} at ({x}, {y})"
            );
        }
    }
}

#[test]
fn batch_stacks_same_sizes_and_rejects_others() {
    let a = preprocess(&gradient(30, 30), Resize::None, 14).unwrap();
    let b = preprocess(
        &RgbImage::from_pixel(28, 29, Rgb([255, 255, 255])),
        Resize::None,
        14,
    )
    .unwrap();
    let stacked = batch(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(stacked.len(), 2 * 3 * 28 * 28);
    assert_eq!(&stacked[..a.data.len()], &a.data[..]);
    assert_eq!(&stacked[a.data.len()..], &b.data[..]);
    assert!(batch(&[]).unwrap().is_empty());

    let c = preprocess(&gradient(42, 28), Resize::None, 14).unwrap();
    let err = batch(&[a.clone(), c]).unwrap_err().to_string();
    assert!(
        err.contains("image 1") && err.contains("42×28") && err.contains("28×28"),
        "{err}"
    );

    let broken = Preprocessed {
        data: vec![0.0; 5],
        ..a.clone()
    };
    let err = batch(&[a, broken]).unwrap_err();
    assert!(matches!(err, ImageError::Batch { index: 1, .. }), "{err}");
}

fn bundled(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/images")
        .join(name)
}

#[test]
fn bundled_photos_load_and_preprocess() {
    for (name, size, preprocessed) in [
        ("astronaut.png", (512, 512), (224, 224)),
        ("chelsea.png", (451, 300), (336, 224)),
        ("coffee.png", (600, 400), (336, 224)),
    ] {
        let img = load_image(&bundled(name)).unwrap();
        assert_eq!(img.dimensions(), size, "{name}");
        let p = preprocess(&img, Resize::ShorterSide(224), 14).unwrap();
        assert_eq!((p.width, p.height), preprocessed, "{name}");
        assert!(
            p.data.iter().all(|v| v.is_finite() && v.abs() < 3.0),
            "{name}"
        );
        // A photo, not a flat field: every channel varies.
        let plane = p.width * p.height;
        for c in 0..3 {
            let ch = &p.data[c * plane..(c + 1) * plane];
            let (lo, hi) = ch
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            assert!(hi - lo > 1.0, "{name} channel {c} spans {lo}..{hi}");
        }
    }
}

/// A PNG whose header claims `w`×`h` grey pixels, with one tiny compressed row after it: the
/// size check must come before any pixel is decoded.
fn huge_png_header(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn pictures_over_the_size_limits_are_refused_before_decoding() {
    // The last two pass the PNG decoder's own default memory limit, which would otherwise
    // answer first with a message that names no size.
    for (w, h) in [
        (30_000, 30_000),
        (16_385, 10),
        (16_000, 16_000),
        (i32::MAX as u32, 1),
        (100_000, 100_000),
    ] {
        let err = decode_image(&huge_png_header(w, h), "huge.png").expect_err("too large");
        assert!(matches!(err, ImageError::TooLarge { .. }), "{w}×{h}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains("huge.png") && msg.contains(&format!("{w}×{h} pixels")),
            "{msg}"
        );
    }
    let msg = decode_image(&huge_png_header(30_000, 30_000), "huge.png")
        .expect_err("too large")
        .to_string();
    assert!(
        msg.contains("30000×30000") || msg.contains("30000"),
        "{msg}"
    );
}
