//! File dialogs beside the path fields: native open/save dialogs (rfd: the platform's own, or the
//! XDG desktop portal on Linux) and, in the browser, the page's file picker. What each dialog is
//! for is a [`DialogSpec`]; the app calls an [`Opener`] with it, so tests can stand in for the
//! person at the dialog.

use std::path::{Path, PathBuf};

/// What a dialog picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// A folder of training images.
    DataFolder,
    /// An IDX file of training images.
    DataFile,
    /// Backbone weights (safetensors) for the inspect view.
    Weights,
    /// A picture for the inspect view.
    Picture,
    /// The run folder of the train view.
    RunFolder,
    /// Where the curves go as CSV.
    Csv,
}

/// The kind of dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogKind {
    /// Choose an existing file.
    OpenFile,
    /// Choose a folder.
    OpenFolder,
    /// Name a file to write.
    SaveFile,
}

/// Everything a dialog is opened with.
#[derive(Clone, Debug, PartialEq)]
pub struct DialogSpec {
    /// What it is for.
    pub pick: Pick,
    /// Window title.
    pub title: &'static str,
    /// Open, folder or save.
    pub kind: DialogKind,
    /// (name, extensions) filters, in order.
    pub filters: Vec<(&'static str, &'static [&'static str])>,
    /// Folder it starts in (the current field's folder, where it exists).
    pub directory: Option<PathBuf>,
    /// File name proposed by a save dialog.
    pub file_name: Option<String>,
}

/// Picture formats the app reads.
pub const PICTURES: &[&str] = &["png", "jpg", "jpeg", "webp"];

/// Shows a dialog and returns the chosen path (`None`: cancelled, or no dialog available).
pub type Opener = Box<dyn FnMut(&DialogSpec) -> Option<PathBuf>>;

/// The dialog for `pick`, starting where `current` (the field's text) points.
pub fn spec(pick: Pick, current: &str) -> DialogSpec {
    let current = Path::new(current.trim());
    let directory = if current.is_dir() {
        Some(current.to_path_buf())
    } else {
        current
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && p.is_dir())
            .map(Path::to_path_buf)
    };
    let (title, kind, filters): (_, _, Vec<(&'static str, &'static [&'static str])>) = match pick {
        Pick::DataFolder => ("Training images: a folder", DialogKind::OpenFolder, vec![]),
        Pick::DataFile => (
            "Training images: an IDX file",
            DialogKind::OpenFile,
            vec![("IDX images", &["idx3-ubyte", "ubyte", "gz"])],
        ),
        Pick::Weights => (
            "Backbone weights",
            DialogKind::OpenFile,
            vec![("safetensors", &["safetensors"])],
        ),
        Pick::Picture => (
            "Picture",
            DialogKind::OpenFile,
            vec![("pictures", PICTURES)],
        ),
        Pick::RunFolder => ("Run folder", DialogKind::OpenFolder, vec![]),
        Pick::Csv => (
            "Export the curves as CSV",
            DialogKind::SaveFile,
            vec![("CSV", &["csv"])],
        ),
    };
    DialogSpec {
        pick,
        title,
        kind,
        filters,
        directory,
        file_name: (pick == Pick::Csv).then(|| "curves.csv".to_string()),
    }
}

/// The platform's dialog (blocks the frame until it closes, as a modal dialog does).
#[cfg(not(target_arch = "wasm32"))]
pub fn native(spec: &DialogSpec) -> Option<PathBuf> {
    let mut d = rfd::FileDialog::new().set_title(spec.title);
    for (name, exts) in &spec.filters {
        d = d.add_filter(*name, exts);
    }
    if let Some(dir) = &spec.directory {
        d = d.set_directory(dir);
    }
    if let Some(f) = &spec.file_name {
        d = d.set_file_name(f);
    }
    match spec.kind {
        DialogKind::OpenFile => d.pick_file(),
        DialogKind::OpenFolder => d.pick_folder(),
        DialogKind::SaveFile => d.save_file(),
    }
}

/// The page's file picker: the chosen file's name and contents (`None`: cancelled).
#[cfg(target_arch = "wasm32")]
pub async fn browser(spec: DialogSpec) -> Option<(PathBuf, Vec<u8>)> {
    let mut d = rfd::AsyncFileDialog::new().set_title(spec.title);
    for (name, exts) in &spec.filters {
        d = d.add_filter(*name, exts);
    }
    let file = d.pick_file().await?;
    let name = PathBuf::from(file.file_name());
    Some((name, file.read().await))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pick_has_its_kind_filters_and_start() {
        let here = env!("CARGO_MANIFEST_DIR");
        let w = spec(
            Pick::Weights,
            &format!("{here}/tests/fixtures/tiny_dinov2/model.safetensors"),
        );
        assert_eq!(w.kind, DialogKind::OpenFile);
        assert_eq!(w.filters, vec![("safetensors", &["safetensors"][..])]);
        assert_eq!(
            w.directory.as_deref(),
            Some(Path::new(&format!("{here}/tests/fixtures/tiny_dinov2")))
        );
        let d = spec(Pick::DataFolder, here);
        assert_eq!(
            (d.kind, d.directory.as_deref()),
            (DialogKind::OpenFolder, Some(Path::new(here)))
        );
        let c = spec(Pick::Csv, "");
        assert_eq!(
            (c.kind, c.file_name.as_deref()),
            (DialogKind::SaveFile, Some("curves.csv"))
        );
        assert_eq!(c.directory, None);
        assert_eq!(spec(Pick::Picture, "/no/such/place/x.png").directory, None);
        assert_eq!(spec(Pick::RunFolder, "").kind, DialogKind::OpenFolder);
        assert!(spec(Pick::DataFile, "").filters[0].1.contains(&"ubyte"));
    }
}
