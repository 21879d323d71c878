//! Datasets: the bundled Fashion-MNIST, IDX files, image folders and their errors.

use super::*;

#[test]
fn bundled_fashion_mnist_subset() {
    let (train, test) = fashion_mnist_bundled().unwrap();
    assert_eq!(train.len(), 3000);
    assert_eq!(test.len(), 1000);
    for ds in [&train, &test] {
        assert_eq!((ds.width(), ds.height()), (28, 28));
        assert_eq!(ds.num_classes(), Some(10));
        let labels = ds.labels().unwrap();
        assert!(labels.iter().all(|&l| l < 10));
        // Every class is present in both subsets.
        for c in 0..10 {
            assert!(labels.contains(&c), "class {c} missing");
        }
        let s = ds.get(0).unwrap();
        assert_eq!(s.image.dimensions(), (28, 28));
        assert!(s.image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        assert_eq!(s.label, ds.label(0));
        assert!(ds.get(ds.len()).is_err());
    }
    assert_eq!(FASHION_MNIST_CLASSES.len(), 10);
    assert_eq!(FASHION_MNIST_CLASSES[9], "Ankle boot");
    // The first training item of Fashion-MNIST is an ankle boot; the first test item too.
    assert_eq!(train.label(0), Some(9));
    assert_eq!(test.label(0), Some(9));

    // The files on disk parse to the same data.
    let from_files = IdxDataset::open(
        &assets().join("train-images-idx3-ubyte.gz"),
        Some(&assets().join("train-labels-idx1-ubyte.gz")),
    )
    .unwrap();
    assert_eq!(from_files.len(), 3000);
    assert_eq!(from_files.grey().pixels(2999), train.pixels(2999));
    assert_eq!(from_files.grey().labels(), train.labels());
    assert!(from_files.describe().contains("3000"));
}

#[test]
fn an_idx_training_file_is_evaluated_on_its_test_split() {
    use dinoscope::train::run::datasets;
    // The bundled files by path: trained on, and k-NN from train to t10k, like the bundled set.
    let (train, eval) = datasets(Some(&assets().join("train-images-idx3-ubyte.gz"))).unwrap();
    let (tr, te) = eval.expect("the t10k split beside it");
    assert_eq!((train.len(), tr.len(), te.len()), (3000, 3000, 1000));
    assert_eq!(te.label(0), Some(9));

    // Plain files named `…-test-…` count too; without a test split, or unlabelled, no k-NN.
    let dir = scratch("idx-splits");
    let images = gunzip(&std::fs::read(assets().join("t10k-images-idx3-ubyte.gz")).unwrap());
    let labels = gunzip(&std::fs::read(assets().join("t10k-labels-idx1-ubyte.gz")).unwrap());
    for (name, bytes) in [
        ("train-images-idx3-ubyte", &images),
        ("train-labels-idx1-ubyte", &labels),
        ("test-images-idx3-ubyte", &images),
        ("test-labels-idx1-ubyte", &labels),
        ("lone-train-images-idx3-ubyte", &images),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let (_, eval) = datasets(Some(&dir.join("train-images-idx3-ubyte"))).unwrap();
    assert_eq!(eval.map(|(a, b)| (a.len(), b.len())), Some((1000, 1000)));
    let (_, eval) = datasets(Some(&dir.join("lone-train-images-idx3-ubyte"))).unwrap();
    assert!(eval.is_none(), "no lone-t10k/test split and no labels");
    let (_, eval) = datasets(Some(&dir.join("test-images-idx3-ubyte"))).unwrap();
    assert!(eval.is_none(), "a test file is not a training file");
    // A test class the training file lacks (labels one up): no k-NN, rather than accuracies
    // that cannot be right.
    let mut shifted = labels.clone();
    shifted[8..].iter_mut().for_each(|l| *l += 1);
    std::fs::write(dir.join("test-labels-idx1-ubyte"), &shifted).unwrap();
    let (_, eval) = datasets(Some(&dir.join("train-images-idx3-ubyte"))).unwrap();
    assert!(eval.is_none(), "test classes the training file lacks");
    std::fs::remove_file(dir.join("test-labels-idx1-ubyte")).unwrap();
    let (_, eval) = datasets(Some(&dir.join("train-images-idx3-ubyte"))).unwrap();
    assert!(eval.is_none(), "an unlabelled test split");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn open_dataset_finds_idx_labels() {
    let ds = open_dataset(&assets().join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(ds.len(), 1000);
    assert_eq!(ds.num_classes(), Some(10));
    assert!(ds.label(5).is_some());

    // Plain (not gzipped) files work too, and the labels are found by name.
    let dir = scratch("plain-idx");
    let images = gunzip(&std::fs::read(assets().join("t10k-images-idx3-ubyte.gz")).unwrap());
    let labels = gunzip(&std::fs::read(assets().join("t10k-labels-idx1-ubyte.gz")).unwrap());
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let plain = open_dataset(&dir.join("t10k-images-idx3-ubyte")).unwrap();
    assert_eq!(plain.len(), 1000);
    assert_eq!(plain.label(999), ds.label(999));

    // Without a labels file the set is unlabelled.
    std::fs::write(dir.join("other-images-idx3-ubyte"), &images).unwrap();
    let unlabelled = open_dataset(&dir.join("other-images-idx3-ubyte")).unwrap();
    assert_eq!(unlabelled.num_classes(), None);
    assert_eq!(unlabelled.label(0), None);

    // A labels file, a text file and a missing path are refused with their names.
    let err = open_dataset(&dir.join("t10k-labels-idx1-ubyte"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte") && err.contains("labels"),
        "{err}"
    );
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();
    let err = open_dataset(&dir.join("notes.txt"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("notes.txt") && err.contains("not a dataset"),
        "{err}"
    );
    // Named like IDX but holding something else: the magic number it starts with.
    std::fs::write(dir.join("my-images-idx3-ubyte"), [0, 0, 8, 4, 0, 0]).unwrap();
    let err = open_dataset(&dir.join("my-images-idx3-ubyte"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("0x00000804"), "{err}");
    let err = open_dataset(&dir.join("missing"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn idx_errors_name_the_file() {
    let dir = scratch("bad-idx");
    let images = gunzip(&std::fs::read(assets().join("t10k-images-idx3-ubyte.gz")).unwrap());
    let labels = gunzip(&std::fs::read(assets().join("t10k-labels-idx1-ubyte.gz")).unwrap());

    // Cut in the middle of the pixel data.
    let cut = dir.join("cut-images-idx3-ubyte");
    std::fs::write(&cut, &images[..16 + 28 * 28 * 10 + 5]).unwrap();
    let err = IdxDataset::open(&cut, None).err().unwrap();
    assert!(matches!(err, DataError::Truncated { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("cut-images-idx3-ubyte") && msg.contains("truncated"),
        "{msg}"
    );

    // Cut inside the header.
    let short = dir.join("short-images-idx3-ubyte");
    std::fs::write(&short, &images[..10]).unwrap();
    let msg = IdxDataset::open(&short, None).err().unwrap().to_string();
    assert!(
        msg.contains("short-images-idx3-ubyte") && msg.contains("header"),
        "{msg}"
    );

    // Garbage with a wrong magic number.
    let garbage = dir.join("garbage.gz");
    std::fs::write(&garbage, gzip(b"this is not an IDX file at all")).unwrap();
    let msg = IdxDataset::open(&garbage, None).err().unwrap().to_string();
    assert!(msg.contains("garbage.gz") && msg.contains("magic"), "{msg}");

    // A gzip stream cut short.
    let gz = std::fs::read(assets().join("t10k-images-idx3-ubyte.gz")).unwrap();
    let cut_gz = dir.join("cut.gz");
    std::fs::write(&cut_gz, &gz[..gz.len() / 2]).unwrap();
    let msg = IdxDataset::open(&cut_gz, None).err().unwrap().to_string();
    assert!(msg.contains("cut.gz"), "{msg}");

    // Labels and images swapped.
    let lab = dir.join("l-idx1-ubyte");
    std::fs::write(&lab, &labels).unwrap();
    let img = dir.join("i-idx3-ubyte");
    std::fs::write(&img, &images).unwrap();
    let msg = IdxDataset::open(&lab, Some(&img))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("l-idx1-ubyte") && msg.contains("labels file"),
        "{msg}"
    );

    // Fewer labels than images.
    let mut few = labels[..8].to_vec();
    few[4..8].copy_from_slice(&999u32.to_be_bytes());
    few.extend_from_slice(&labels[8..8 + 999]);
    let few_path = dir.join("few-labels-idx1-ubyte");
    std::fs::write(&few_path, &few).unwrap();
    let msg = IdxDataset::open(&img, Some(&few_path))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("few-labels-idx1-ubyte") && msg.contains("999"),
        "{msg}"
    );

    // Extra bytes after the data.
    let mut long = images.clone();
    long.extend_from_slice(&[0; 7]);
    let long_path = dir.join("long-idx3-ubyte");
    std::fs::write(&long_path, &long).unwrap();
    let msg = IdxDataset::open(&long_path, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("long-idx3-ubyte") && msg.contains('7'),
        "{msg}"
    );

    // Missing file.
    let msg = IdxDataset::open(&dir.join("nope"), None)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("nope"), "{msg}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn in_memory_grey_checks_sizes() {
    let ds = InMemoryGrey::new("tiny", 2, 3, (0..12).collect(), Some(vec![0, 4])).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.num_classes(), Some(5));
    let s = ds.get(1).unwrap();
    assert_eq!(s.image.dimensions(), (2, 3));
    assert_eq!(s.image.get_pixel(1, 2).0, [11, 11, 11]);
    assert_eq!(s.label, Some(4));
    assert!(InMemoryGrey::new("odd", 2, 3, vec![0; 13], None).is_err());
    assert!(InMemoryGrey::new("labels", 2, 3, vec![0; 12], Some(vec![1])).is_err());
    assert!(InMemoryGrey::new("empty", 0, 3, vec![], None).is_err());
}

#[test]
fn image_folder_classes_and_errors() {
    let dir = class_folder("folder");
    let ds = ImageFolder::open(&dir).unwrap();
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.classes(), ["cat", "dog"]);
    assert_eq!(ds.num_classes(), Some(2));
    let labels: Vec<_> = (0..6).map(|i| ds.label(i)).collect();
    assert_eq!(
        labels,
        [Some(0), Some(0), Some(0), Some(1), Some(1), Some(1)]
    );
    let names: Vec<String> = (0..6)
        .map(|i| {
            ds.path(i)
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "cat0.png",
            "cat1.png",
            "cat2.png",
            "broken.png",
            "dog0.png",
            "dog1.png"
        ]
    );
    let s = ds.get(1).unwrap();
    assert_eq!(s.image.dimensions(), (21, 18));
    assert_eq!(s.label, Some(0));
    let err = ds.get(3).err().unwrap().to_string();
    assert!(err.contains("broken.png"), "{err}");
    assert!(ds.get(6).is_err());
    assert!(ds.describe().contains("2 classes"));

    // open_dataset on a folder gives the same listing.
    let opened = open_dataset(&dir).unwrap();
    assert_eq!(opened.len(), 6);
    assert_eq!(opened.label(4), Some(1));

    // Pictures directly in the root: unlabelled.
    let flat = scratch("flat");
    gradient(8, 8).save(flat.join("a.png")).unwrap();
    std::fs::create_dir_all(flat.join("sub")).unwrap();
    gradient(8, 8).save(flat.join("sub/b.png")).unwrap();
    let ds = ImageFolder::open(&flat).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.num_classes(), None);
    assert_eq!(ds.label(0), None);
    // A link back up the tree (a loop) and a second link to a listed folder add no picture.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("..", flat.join("sub/up")).unwrap();
        std::os::unix::fs::symlink("sub", flat.join("again")).unwrap();
        let ds = ImageFolder::open(&flat).unwrap();
        assert_eq!(ds.len(), 2);
        // The folder is listed under its own name, not the link's, which sorts first.
        assert!(
            ds.path(1).unwrap().starts_with(flat.join("sub")),
            "{:?}",
            ds.path(1)
        );
        assert_eq!(
            dinoscope::data::dataset::image_files(&flat).unwrap().len(),
            2
        );
    }

    // Class folders whose names differ only in bytes that are not UTF-8 stay two classes
    // (a lossy name made them one).
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let raw = scratch("raw_names");
        for (i, byte) in [0xffu8, 0xfe].into_iter().enumerate() {
            let sub = raw.join(std::ffi::OsStr::from_bytes(&[b'a', byte]));
            std::fs::create_dir_all(&sub).unwrap();
            gradient(8 + i as u32, 8).save(sub.join("p.png")).unwrap();
        }
        let ds = ImageFolder::open(&raw).unwrap();
        assert_eq!(ds.classes(), ["a\\xFE", "a\\xFF"]);
        assert_eq!((ds.label(0), ds.label(1)), (Some(0), Some(1)));
        // A folder whose UTF-8 name reads as another's escaped one is refused, naming both.
        let twin = raw.join("a\\xFF");
        std::fs::create_dir_all(&twin).unwrap();
        gradient(8, 8).save(twin.join("p.png")).unwrap();
        let err = ImageFolder::open(&raw).err().unwrap().to_string();
        assert!(
            err.contains("same name") && err.contains("rename one"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(raw);
    }

    // No pictures at all.
    let empty = scratch("empty");
    let err = ImageFolder::open(&empty).err().unwrap().to_string();
    assert!(err.contains("no png"), "{err}");
    for d in [dir, flat, empty] {
        let _ = std::fs::remove_dir_all(d);
    }
}
