//! IDX files (the MNIST family): parsing, gzip, and finding the labels next to the images.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{
    DataError, Dataset, InMemoryGrey, Sample, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, MAX_IDX_BYTES,
};
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
pub(super) fn maybe_gunzip<'a>(
    bytes: &'a [u8],
    name: &str,
) -> Result<std::borrow::Cow<'a, [u8]>, DataError> {
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
pub(super) fn parse_idx<'a>(
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

/// The labels file next to an IDX images file by the usual naming (`images`→`labels`,
/// `idx3`→`idx1`, with or without `.gz`), if one exists.
pub fn idx_labels_for(images_path: &Path) -> Option<PathBuf> {
    let name = images_path.file_name()?.to_str()?;
    let base = name.replace("images", "labels").replace("idx3", "idx1");
    if base == name {
        return None;
    }
    sibling_file(images_path, &base)
}

/// The file named `name` beside `path`, or the same name with or without `.gz`, if one exists.
fn sibling_file(path: &Path, name: &str) -> Option<PathBuf> {
    let stripped = name.strip_suffix(".gz").unwrap_or(name);
    [
        name.to_string(),
        stripped.to_string(),
        format!("{stripped}.gz"),
    ]
    .iter()
    .map(|c| path.with_file_name(c))
    .find(|p| p.is_file())
}

/// The test split beside an IDX training images file by the MNIST naming (`train`→`t10k`, or
/// `train`→`test`, with or without `.gz`), if one exists.
pub fn idx_test_split_for(images_path: &Path) -> Option<PathBuf> {
    let name = images_path.file_name()?.to_str()?;
    if !name.contains("train") {
        return None;
    }
    ["t10k", "test"]
        .iter()
        .find_map(|t| sibling_file(images_path, &name.replace("train", t)))
}

/// The first four bytes of a file, decompressed if it is gzip; None if it is shorter.
///
/// Only the start is read, so pointing at a large file of another kind costs nothing.
pub(super) fn sniff_magic(path: &Path) -> Result<Option<u32>, DataError> {
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
