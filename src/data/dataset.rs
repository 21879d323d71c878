//! Datasets: folders of images, IDX files (the MNIST family) and the bundled Fashion-MNIST subset.
//!
//! A dataset hands out decoded 8-bit RGB pictures with an optional class label. Folders decode
//! lazily, one picture per [`Dataset::get`], so a large folder costs only its file list; IDX files
//! are small enough to hold in memory. Every failure names the file it came from.

use std::fmt;
use std::path::Path;

use ::image::RgbImage;

use crate::data::image::ImageError;

mod folder;
mod idx;

use folder::is_image_name;
pub use folder::{image_files, ImageFolder};
pub use idx::{idx_labels_for, idx_test_split_for, IdxDataset};
use idx::{maybe_gunzip, parse_idx, sniff_magic};

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
    /// Most of the items sampled before training could not be read: the batches would repeat
    /// the few that can, and the folder is most likely not the one meant, or a damaged copy.
    #[error(
        "{dataset}: {bad} of {sampled} items sampled across it cannot be read (the last: \
         {last}); most of it is unreadable: the wrong folder, or a damaged copy?"
    )]
    MostlyUnreadable {
        /// The dataset.
        dataset: String,
        /// How many of the sampled items could not be read.
        bad: usize,
        /// How many items were sampled.
        sampled: usize,
        /// The last failure.
        last: String,
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
    /// [`Dataset::get`] for a caller that shrinks the picture at once by the whole factor
    /// `factor(width, height)` returns ([`crate::data::resample::reduce_box`]): a dataset that
    /// can do so for less than decoding in full (image folders) returns it shrunk, the others
    /// return it as `get` does and leave the shrinking to the caller.
    fn get_reduced(&self, i: usize, factor: &dyn Fn(u32, u32) -> u32) -> Result<Sample, DataError> {
        let _ = factor;
        self.get(i)
    }
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
    if !meta.is_file() {
        // A pipe would block the read below; a device would never end.
        return Err(DataError::NotADataset {
            path: shown,
            detail: "not a regular file (a pipe or device)".into(),
        });
    }
    let idx_named = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .is_some_and(|n| n.contains("ubyte") || n.contains("idx"));
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
        Some(found) if idx_named && !is_image_name(path) => Err(DataError::NotADataset {
            path: shown,
            detail: format!(
                "named like an IDX file, but it starts with 0x{found:08X}, where an IDX images \
                 file starts with 0x{IDX_IMAGES_MAGIC:08X} (after gzip, if compressed)"
            ),
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
