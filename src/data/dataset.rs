//! Datasets: folders of images, IDX files (the MNIST family) and the bundled Fashion-MNIST subset.
//!
//! A dataset hands out decoded 8-bit RGB pictures with an optional class label. Folders decode
//! lazily, one picture per [`Dataset::get`], so a large folder costs only its file list; IDX files
//! are small enough to hold in memory. Every failure names the file it came from.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ::image::RgbImage;

use crate::data::image::{load_image, ImageError};

/// The Fashion-MNIST class names, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// IDX magic for unsigned-byte data with three dimensions (images).
const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic for unsigned-byte data with one dimension (labels).
const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// The most bytes an IDX file may decompress to: far above any MNIST-family file, low enough
/// that a corrupt or hostile archive cannot exhaust memory.
const MAX_IDX_BYTES: u64 = 1 << 30;
/// How deep `ImageFolder` descends; also stops symlink loops.
const MAX_FOLDER_DEPTH: usize = 32;

const BUNDLED_TRAIN_IMAGES: &[u8] =
    include_bytes!("../../assets/fashion_mnist/train-images-idx3-ubyte.gz");
const BUNDLED_TRAIN_LABELS: &[u8] =
    include_bytes!("../../assets/fashion_mnist/train-labels-idx1-ubyte.gz");
const BUNDLED_TEST_IMAGES: &[u8] =
    include_bytes!("../../assets/fashion_mnist/t10k-images-idx3-ubyte.gz");
const BUNDLED_TEST_LABELS: &[u8] =
    include_bytes!("../../assets/fashion_mnist/t10k-labels-idx1-ubyte.gz");

/// Why data could not be opened, read or batched.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read from disk.
    #[error("{path}: cannot read: {cause}")]
    Io {
        /// The file or folder.
        path: String,
        /// What the operating system said.
        cause: std::io::Error,
    },
    /// A picture failed to decode (the error names the file).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A file is not in the expected format.
    #[error("{path}: {detail}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A file ends before the data its header announces.
    #[error("{path}: truncated: the header announces {expected} bytes of data but {found} follow")]
    Truncated {
        /// The file.
        path: String,
        /// Data bytes the header announces.
        expected: u64,
        /// Data bytes actually present.
        found: u64,
    },
    /// Images and labels disagree on how many items there are.
    #[error("{labels}: holds {label_count} labels but {images} holds {image_count} images")]
    CountMismatch {
        /// The images file.
        images: String,
        /// How many images it holds.
        image_count: usize,
        /// The labels file.
        labels: String,
        /// How many labels it holds.
        label_count: usize,
    },
    /// A folder holds no png, jpeg or webp files.
    #[error("{path}: no png, jpeg or webp images found")]
    NoImages {
        /// The folder.
        path: String,
    },
    /// A path is neither a folder of images nor an IDX images file.
    #[error("{path}: not a dataset: {detail}")]
    NotADataset {
        /// The path.
        path: String,
        /// What it is instead, and what is expected.
        detail: String,
    },
    /// An item past the end of a dataset was asked for.
    #[error("{dataset}: item {index} requested but there are only {len}")]
    OutOfRange {
        /// The dataset.
        dataset: String,
        /// The requested item.
        index: usize,
        /// How many items there are.
        len: usize,
    },
    /// A loader or augmentation setting is unusable.
    #[error("invalid data configuration: {0}")]
    Config(String),
    /// The dataset has fewer items than one batch needs.
    #[error("{dataset}: {len} items, fewer than one batch of {batch_size}")]
    TooSmall {
        /// The dataset.
        dataset: String,
        /// How many items it has.
        len: usize,
        /// The batch size.
        batch_size: usize,
    },
    /// Not one item of the dataset could be read.
    #[error("{dataset}: no readable item ({skipped} tried); last error: {last}")]
    NothingReadable {
        /// The dataset.
        dataset: String,
        /// How many items were tried.
        skipped: usize,
        /// The last failure.
        last: String,
    },
    /// A background worker stopped without delivering its batch (it panicked).
    #[error("a data loader worker stopped unexpectedly before delivering step {step}")]
    WorkerStopped {
        /// The step that was not delivered.
        step: u64,
    },
}

/// One decoded item: an RGB picture and its class, if the dataset has classes.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The picture, 8-bit RGB.
    pub image: RgbImage,
    /// The class index, if the dataset is labelled.
    pub label: Option<u32>,
}

/// A collection of pictures addressable by index, shared between loader threads.
pub trait Dataset: Send + Sync {
    /// How many items there are.
    fn len(&self) -> usize;
    /// Whether there are no items.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Decodes item `i`; an unreadable item is an error naming its file, never a panic.
    fn get(&self, i: usize) -> Result<Sample, DataError>;
    /// The class of item `i` without decoding it (None when unlabelled or out of range).
    fn label(&self, i: usize) -> Option<u32>;
    /// How many classes there are, if the dataset is labelled.
    fn num_classes(&self) -> Option<usize>;
    /// The name of each class by label (folder names; the label numbers for IDX sets), so two
    /// sets can be matched by name.
    fn class_names(&self) -> Vec<String> {
        (0..self.num_classes().unwrap_or(0))
            .map(|c| c.to_string())
            .collect()
    }
    /// A one-line description for logs: source, size, classes.
    fn describe(&self) -> String;
}

/// A folder of png/jpeg/webp files, listed recursively and decoded lazily.
///
/// When every image sits inside a direct subfolder of the root, the sorted subfolder names are
/// the classes (the torchvision `ImageFolder` convention); otherwise the set is unlabelled.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    labels: Option<Vec<u32>>,
    classes: Vec<String>,
}

impl ImageFolder {
    /// Lists the images under `root`, sorted by path; fails if there are none.
    pub fn open(root: &Path) -> Result<Self, DataError> {
        let meta = std::fs::metadata(root).map_err(|cause| DataError::Io {
            path: root.display().to_string(),
            cause,
        })?;
        if !meta.is_dir() {
            return Err(DataError::NotADataset {
                path: root.display().to_string(),
                detail: "not a folder".into(),
            });
        }
        let mut files = Vec::new();
        list_images(root, 0, &mut files)?;
        if files.is_empty() {
            return Err(DataError::NoImages {
                path: root.display().to_string(),
            });
        }
        // Sorting relative paths component-wise gives the same order on every platform and
        // keeps each class's files together.
        files.sort();

        let class_of = |f: &PathBuf| -> Option<String> {
            let mut parts = f.strip_prefix(root).ok()?.components();
            let first = parts.next()?;
            // A file directly in the root has nothing after its one component.
            parts.next()?;
            Some(first.as_os_str().to_string_lossy().into_owned())
        };
        let per_file: Option<Vec<String>> = files.iter().map(class_of).collect();
        let (labels, classes) = match per_file {
            Some(names) => {
                let mut classes = names.clone();
                classes.sort();
                classes.dedup();
                let labels = names
                    .iter()
                    .map(|n| classes.binary_search(n).unwrap_or(0) as u32)
                    .collect();
                (Some(labels), classes)
            }
            None => (None, Vec::new()),
        };
        Ok(ImageFolder {
            root: root.to_path_buf(),
            files,
            labels,
            classes,
        })
    }

    /// The folder this set was read from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of item `i`.
    pub fn path(&self, i: usize) -> Option<&Path> {
        self.files.get(i).map(PathBuf::as_path)
    }

    /// The class names (subfolder names, sorted), empty when unlabelled.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

fn is_image_name(path: &Path) -> bool {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return false;
    };
    matches!(
        ext.to_ascii_lowercase().as_str(),
        "png" | "jpg" | "jpeg" | "webp"
    )
}

fn is_hidden(path: &Path) -> bool {
    // Hidden entries include macOS "._name.jpg" resource forks, which are not pictures.
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn list_images(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let io_err = |cause| DataError::Io {
        path: dir.display().to_string(),
        cause,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if is_hidden(&path) {
            continue;
        }
        // metadata follows symlinks, so linked folders and files are included; the depth limit
        // ends a symlink cycle.
        let Ok(meta) = std::fs::metadata(&path) else {
            // A dangling link is not an image; an unreadable image file is kept and reported
            // when it is decoded.
            if is_image_name(&path) {
                out.push(path);
            }
            continue;
        };
        if meta.is_dir() {
            if depth < MAX_FOLDER_DEPTH {
                list_images(&path, depth + 1, out)?;
            }
        } else if is_image_name(&path) {
            out.push(path);
        }
    }
    Ok(())
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, i: usize) -> Result<Sample, DataError> {
        let path = self.files.get(i).ok_or_else(|| DataError::OutOfRange {
            dataset: self.root.display().to_string(),
            index: i,
            len: self.files.len(),
        })?;
        let image = load_image(path)?;
        Ok(Sample {
            image,
            label: self.label(i),
        })
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.labels.as_ref()?.get(i).copied()
    }

    fn num_classes(&self) -> Option<usize> {
        self.labels.as_ref().map(|_| self.classes.len())
    }

    fn class_names(&self) -> Vec<String> {
        if self.labels.is_some() {
            self.classes.clone()
        } else {
            Vec::new()
        }
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "image folder {}: {} images",
            self.root.display(),
            self.files.len()
        );
        if self.labels.is_some() {
            s += &format!(
                ", {} classes ({})",
                self.classes.len(),
                preview(&self.classes)
            );
        } else {
            s += ", unlabelled";
        }
        s
    }
}

/// The first few names, then a count of the rest, so a thousand classes stay one line.
fn preview(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s += &format!(", … {} more", names.len() - SHOWN);
    }
    s
}

/// Same-size 8-bit grey pictures with optional labels, held in memory (the MNIST family).
#[derive(Clone)]
pub struct InMemoryGrey {
    name: String,
    width: usize,
    height: usize,
    pixels: Vec<u8>,
    labels: Option<Vec<u32>>,
    num_classes: Option<usize>,
}

impl fmt::Debug for InMemoryGrey {
    // The pixel buffer is megabytes; show its shape instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryGrey")
            .field("name", &self.name)
            .field("len", &self.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .field("num_classes", &self.num_classes)
            .finish()
    }
}

impl InMemoryGrey {
    /// Wraps row-major grey pixels (`len·height·width` bytes) and optional labels.
    ///
    /// `num_classes` is one more than the largest label.
    pub fn new(
        name: impl Into<String>,
        width: usize,
        height: usize,
        pixels: Vec<u8>,
        labels: Option<Vec<u32>>,
    ) -> Result<Self, DataError> {
        let name = name.into();
        let plane = width.checked_mul(height).filter(|&p| p > 0);
        let Some(plane) = plane else {
            return Err(DataError::Format {
                path: name,
                detail: format!("a {width}×{height} picture has no pixels"),
            });
        };
        if !pixels.len().is_multiple_of(plane) {
            return Err(DataError::Format {
                path: name,
                detail: format!(
                    "{} bytes is not a whole number of {width}×{height} pictures",
                    pixels.len()
                ),
            });
        }
        let count = pixels.len() / plane;
        if let Some(l) = &labels {
            if l.len() != count {
                return Err(DataError::CountMismatch {
                    images: name.clone(),
                    image_count: count,
                    labels: name,
                    label_count: l.len(),
                });
            }
        }
        let num_classes = labels
            .as_ref()
            .map(|l| l.iter().max().map_or(0, |&m| m as usize + 1));
        Ok(InMemoryGrey {
            name,
            width,
            height,
            pixels,
            labels,
            num_classes,
        })
    }

    /// Parses IDX images and optional labels (plain or gzip bytes); the names label errors.
    pub fn from_idx_bytes(
        images: &[u8],
        images_name: &str,
        labels: Option<(&[u8], &str)>,
    ) -> Result<Self, DataError> {
        let raw = maybe_gunzip(images, images_name)?;
        let (dims, data) = parse_idx(&raw, images_name, IDX_IMAGES_MAGIC, "images (idx3-ubyte)")?;
        let (count, height, width) = (dims[0], dims[1], dims[2]);
        if width == 0 || height == 0 {
            return Err(DataError::Format {
                path: images_name.into(),
                detail: format!("pictures of {width}×{height} pixels have no pixels"),
            });
        }
        let labels = match labels {
            Some((bytes, labels_name)) => {
                let raw = maybe_gunzip(bytes, labels_name)?;
                let (ldims, ldata) =
                    parse_idx(&raw, labels_name, IDX_LABELS_MAGIC, "labels (idx1-ubyte)")?;
                if ldims[0] != count {
                    return Err(DataError::CountMismatch {
                        images: images_name.into(),
                        image_count: count,
                        labels: labels_name.into(),
                        label_count: ldims[0],
                    });
                }
                Some(ldata.iter().map(|&b| u32::from(b)).collect())
            }
            None => None,
        };
        InMemoryGrey::new(images_name, width, height, data.to_vec(), labels)
    }

    /// Picture width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Picture height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The grey pixels of item `i`, row-major.
    pub fn pixels(&self, i: usize) -> Option<&[u8]> {
        let plane = self.width * self.height;
        let start = i.checked_mul(plane)?;
        self.pixels.get(start..start.checked_add(plane)?)
    }

    /// All labels, if labelled.
    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }

    /// The name errors and descriptions use.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Dataset for InMemoryGrey {
    fn len(&self) -> usize {
        self.pixels.len() / (self.width * self.height)
    }

    fn get(&self, i: usize) -> Result<Sample, DataError> {
        let grey = self.pixels(i).ok_or_else(|| DataError::OutOfRange {
            dataset: self.name.clone(),
            index: i,
            len: self.len(),
        })?;
        // Grey is replicated to three channels, as PIL's L → RGB conversion does.
        let rgb: Vec<u8> = grey.iter().flat_map(|&v| [v, v, v]).collect();
        let image =
            RgbImage::from_raw(self.width as u32, self.height as u32, rgb).ok_or_else(|| {
                DataError::Format {
                    path: self.name.clone(),
                    detail: "picture size does not fit its pixel buffer".into(),
                }
            })?;
        Ok(Sample {
            image,
            label: self.label(i),
        })
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.labels.as_ref()?.get(i).copied()
    }

    fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }

    fn describe(&self) -> String {
        let classes = match self.num_classes {
            Some(n) => format!("{n} classes"),
            None => "unlabelled".into(),
        };
        format!(
            "{}: {} grey {}×{} images, {classes}",
            self.name,
            self.len(),
            self.width,
            self.height
        )
    }
}

/// An IDX images file (with its labels file, if any) read into memory.
#[derive(Debug, Clone)]
pub struct IdxDataset {
    data: InMemoryGrey,
    images_path: PathBuf,
    labels_path: Option<PathBuf>,
}

impl IdxDataset {
    /// Reads an `idx3-ubyte` images file and an optional `idx1-ubyte` labels file, plain or .gz.
    pub fn open(images_path: &Path, labels_path: Option<&Path>) -> Result<Self, DataError> {
        let images_name = images_path.display().to_string();
        let images = read_file(images_path)?;
        let labels = match labels_path {
            Some(p) => Some((read_file(p)?, p.display().to_string())),
            None => None,
        };
        let data = InMemoryGrey::from_idx_bytes(
            &images,
            &images_name,
            labels.as_ref().map(|(b, n)| (b.as_slice(), n.as_str())),
        )?;
        Ok(IdxDataset {
            data,
            images_path: images_path.to_path_buf(),
            labels_path: labels_path.map(Path::to_path_buf),
        })
    }

    /// The images file.
    pub fn images_path(&self) -> &Path {
        &self.images_path
    }

    /// The labels file, if one was read.
    pub fn labels_path(&self) -> Option<&Path> {
        self.labels_path.as_deref()
    }

    /// The pictures and labels held in memory.
    pub fn grey(&self) -> &InMemoryGrey {
        &self.data
    }

    /// Gives up the file paths and keeps the in-memory pictures.
    pub fn into_inner(self) -> InMemoryGrey {
        self.data
    }
}

impl Dataset for IdxDataset {
    fn len(&self) -> usize {
        self.data.len()
    }

    fn get(&self, i: usize) -> Result<Sample, DataError> {
        self.data.get(i)
    }

    fn label(&self, i: usize) -> Option<u32> {
        self.data.label(i)
    }

    fn num_classes(&self) -> Option<usize> {
        self.data.num_classes()
    }

    fn describe(&self) -> String {
        let mut s = format!("IDX {}", self.data.describe());
        if let Some(l) = &self.labels_path {
            s += &format!(" (labels {})", l.display());
        }
        s
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|cause| DataError::Io {
        path: path.display().to_string(),
        cause,
    })
}

/// Decompresses gzip bytes (recognised by their magic, not the file name); other bytes pass.
fn maybe_gunzip<'a>(bytes: &'a [u8], name: &str) -> Result<std::borrow::Cow<'a, [u8]>, DataError> {
    if !bytes.starts_with(&[0x1F, 0x8B]) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_IDX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| DataError::Format {
            path: name.into(),
            detail: format!("corrupt or truncated gzip data: {e}"),
        })?;
    if out.len() as u64 > MAX_IDX_BYTES {
        return Err(DataError::Format {
            path: name.into(),
            detail: format!("decompresses to more than {MAX_IDX_BYTES} bytes"),
        });
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Checks an IDX header against `magic` and returns its dimensions and exactly its data.
fn parse_idx<'a>(
    raw: &'a [u8],
    name: &str,
    magic: u32,
    what: &str,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let format = |detail: String| DataError::Format {
        path: name.into(),
        detail,
    };
    let Some(head) = raw.get(..4) else {
        return Err(format(format!(
            "not an IDX {what} file: only {} bytes",
            raw.len()
        )));
    };
    let found = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if found != magic {
        let hint = match found {
            IDX_IMAGES_MAGIC => " (this is an IDX images file)",
            IDX_LABELS_MAGIC => " (this is an IDX labels file)",
            _ => "",
        };
        return Err(format(format!(
            "not an IDX {what} file: magic number 0x{found:08X}, expected 0x{magic:08X}{hint}"
        )));
    }
    let ndims = (magic & 0xFF) as usize;
    let header_len = 4 + 4 * ndims;
    let Some(dim_bytes) = raw.get(4..header_len) else {
        return Err(format(format!(
            "truncated IDX header: {} bytes, {header_len} needed",
            raw.len()
        )));
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| format(format!("dimensions {dims:?} overflow")))?;
    let data = &raw[header_len..];
    let found_len = data.len() as u64;
    if found_len < expected {
        return Err(DataError::Truncated {
            path: name.into(),
            expected,
            found: found_len,
        });
    }
    if found_len > expected {
        return Err(format(format!(
            "{} bytes after the {expected} the header announces (dimensions {dims:?}): \
             not an IDX {what} file or a damaged one",
            found_len - expected
        )));
    }
    Ok((dims, data))
}

/// The bundled Fashion-MNIST subset: (first 3000 training, first 1000 test) images and labels.
///
/// The files are compiled into the binary, so this works without files at run time and in the
/// browser.
pub fn fashion_mnist_bundled() -> Result<(InMemoryGrey, InMemoryGrey), DataError> {
    let train = InMemoryGrey::from_idx_bytes(
        BUNDLED_TRAIN_IMAGES,
        "bundled fashion_mnist/train-images-idx3-ubyte.gz",
        Some((
            BUNDLED_TRAIN_LABELS,
            "bundled fashion_mnist/train-labels-idx1-ubyte.gz",
        )),
    )?;
    let test = InMemoryGrey::from_idx_bytes(
        BUNDLED_TEST_IMAGES,
        "bundled fashion_mnist/t10k-images-idx3-ubyte.gz",
        Some((
            BUNDLED_TEST_LABELS,
            "bundled fashion_mnist/t10k-labels-idx1-ubyte.gz",
        )),
    )?;
    Ok((train, test))
}

/// The labels file next to an IDX images file by the usual naming (`images`→`labels`,
/// `idx3`→`idx1`, with or without `.gz`), if one exists.
pub fn idx_labels_for(images_path: &Path) -> Option<PathBuf> {
    let name = images_path.file_name()?.to_str()?;
    let base = name.replace("images", "labels").replace("idx3", "idx1");
    if base == name {
        return None;
    }
    let stripped = base.strip_suffix(".gz").unwrap_or(&base).to_string();
    let candidates = [base.clone(), stripped.clone(), format!("{stripped}.gz")];
    candidates
        .iter()
        .map(|c| images_path.with_file_name(c))
        .find(|p| p.is_file())
}

/// The first four bytes of a file, decompressed if it is gzip; None if it is shorter.
///
/// Only the start is read, so pointing at a large file of another kind costs nothing.
fn sniff_magic(path: &Path) -> Result<Option<u32>, DataError> {
    let shown = || path.display().to_string();
    let file = std::fs::File::open(path).map_err(|cause| DataError::Io {
        path: shown(),
        cause,
    })?;
    let mut head = Vec::with_capacity(4);
    file.take(4)
        .read_to_end(&mut head)
        .map_err(|cause| DataError::Io {
            path: shown(),
            cause,
        })?;
    if head.starts_with(&[0x1F, 0x8B]) {
        let file = std::fs::File::open(path).map_err(|cause| DataError::Io {
            path: shown(),
            cause,
        })?;
        head.clear();
        flate2::read::MultiGzDecoder::new(file)
            .take(4)
            .read_to_end(&mut head)
            .map_err(|e| DataError::Format {
                path: shown(),
                detail: format!("corrupt or truncated gzip data: {e}"),
            })?;
    }
    Ok((head.len() == 4).then(|| u32::from_be_bytes([head[0], head[1], head[2], head[3]])))
}

/// Opens a folder of images or an IDX images file (labels found next to it) as a dataset.
pub fn open_dataset(path: &Path) -> Result<Box<dyn Dataset>, DataError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|cause| DataError::Io {
        path: shown.clone(),
        cause,
    })?;
    if meta.is_dir() {
        return Ok(Box::new(ImageFolder::open(path)?));
    }
    match sniff_magic(path)? {
        Some(IDX_IMAGES_MAGIC) => {
            let labels = idx_labels_for(path);
            Ok(Box::new(IdxDataset::open(path, labels.as_deref())?))
        }
        Some(IDX_LABELS_MAGIC) => Err(DataError::NotADataset {
            path: shown,
            detail: "this is an IDX labels file; pass the images file (idx3-ubyte) and the \
                     labels next to it are found by name"
                .into(),
        }),
        _ if is_image_name(path) => Err(DataError::NotADataset {
            path: shown,
            detail: "a single picture; pass the folder that holds the images".into(),
        }),
        _ => Err(DataError::NotADataset {
            path: shown,
            detail: "expected a folder of png/jpeg/webp images or an IDX images file \
                     (idx3-ubyte, optionally .gz)"
                .into(),
        }),
    }
}
