//! A folder of images as a dataset: listed recursively, decoded lazily, classes from subfolders.

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Sample, MAX_FOLDER_DEPTH};
use crate::data::image::load_image_reduced;
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
        let mut files = image_files(root)?;
        if files.is_empty() {
            return Err(DataError::NoImages {
                path: root.display().to_string(),
            });
        }
        // Sorting relative paths component-wise gives the same order on every platform and
        // keeps each class's files together.
        files.sort();

        let class_of = |f: &PathBuf| -> Option<(String, std::ffi::OsString)> {
            let mut parts = f.strip_prefix(root).ok()?.components();
            let first = parts.next()?;
            // A file directly in the root has nothing after its one component.
            parts.next()?;
            Some((
                crate::io::text_of(first.as_os_str()),
                first.as_os_str().to_os_string(),
            ))
        };
        let per_file: Option<Vec<(String, std::ffi::OsString)>> =
            files.iter().map(class_of).collect();
        // Two folders whose names read the same as text would become one class.
        let mut folder_of = std::collections::BTreeMap::new();
        for (name, raw) in per_file.iter().flatten() {
            if let Some(other) = folder_of.insert(name, raw).filter(|o| *o != raw) {
                return Err(DataError::NotADataset {
                    path: root.display().to_string(),
                    detail: format!(
                        "the class folders {} and {} have the same name as text ({name}); \
                         rename one",
                        root.join(other).display(),
                        root.join(raw).display()
                    ),
                });
            }
        }
        let per_file: Option<Vec<String>> =
            per_file.map(|v| v.into_iter().map(|(name, _)| name).collect());
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

pub(super) fn is_image_name(path: &Path) -> bool {
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

/// The image files under `dir`, at any depth, sorted by path. Linked folders are followed,
/// each folder once: a link back up the tree (a loop) or to a folder already listed is skipped
/// with a warning, so no picture is listed twice.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    let mut seen = std::collections::HashSet::new();
    list_images(dir, 0, &mut seen, &mut files)?;
    files.sort();
    Ok(files)
}

fn list_images(
    dir: &Path,
    depth: usize,
    seen: &mut std::collections::HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), DataError> {
    let io_err = |cause| DataError::Io {
        path: dir.display().to_string(),
        cause,
    };
    if let Ok(real) = std::fs::canonicalize(dir) {
        if !seen.insert(real.clone()) {
            log::warn!(
                "{}: skipped, a link to {}, which is listed already",
                dir.display(),
                real.display()
            );
            return Ok(());
        }
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        entries.push(entry.map_err(io_err)?.path());
    }
    // Real folders before links to them (a link to a class folder must not take its name),
    // then in name order, so that of two links to one folder the same one is listed every run.
    entries.sort_by_key(|p| (p.is_symlink(), p.clone()));
    for path in entries {
        if is_hidden(&path) {
            continue;
        }
        // metadata follows symlinks, so linked folders and files are included; a folder seen
        // before is skipped, and the depth limit stops what canonicalize cannot resolve.
        let Ok(meta) = std::fs::metadata(&path) else {
            // A dangling link is not an image; an unreadable image file is kept and reported
            // when it is decoded.
            if is_image_name(&path) {
                out.push(path);
            }
            continue;
        };
        if meta.is_dir() {
            // A subfolder this user may not read (a disk's `lost+found`) is passed over, as an
            // unreadable picture is; the folder given itself must read.
            if let Err(e) = std::fs::read_dir(&path) {
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    log::warn!("{}: skipped, cannot read: {e}", path.display());
                    continue;
                }
            }
            if depth < MAX_FOLDER_DEPTH {
                list_images(&path, depth + 1, seen, out)?;
            }
        } else if is_image_name(&path) {
            if meta.is_file() {
                out.push(path);
            } else {
                // Opening a pipe would block the loader; a device would never end.
                log::warn!("{}: skipped, not a regular file", path.display());
            }
        }
    }
    Ok(())
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, i: usize) -> Result<Sample, DataError> {
        self.get_reduced(i, &|_, _| 1)
    }

    fn get_reduced(&self, i: usize, factor: &dyn Fn(u32, u32) -> u32) -> Result<Sample, DataError> {
        let path = self.files.get(i).ok_or_else(|| DataError::OutOfRange {
            dataset: self.root.display().to_string(),
            index: i,
            len: self.files.len(),
        })?;
        let image = load_image_reduced(path, factor)?;
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

#[cfg(all(test, unix))]
mod fifo_tests {
    /// A pipe named like a picture is not listed (opening it would block the loader), and read
    /// as a picture it is refused without being opened.
    #[test]
    fn a_pipe_is_neither_listed_nor_read() {
        let dir = std::env::temp_dir().join(format!("dinoscope-list-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let fifo = dir.join("f.png");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        image::RgbImage::new(2, 2)
            .save(dir.join("a.png"))
            .expect("png");
        assert_eq!(
            super::image_files(&dir).expect("list"),
            vec![dir.join("a.png")]
        );
        let err = crate::data::image::load_image(&fifo).expect_err("a pipe");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
