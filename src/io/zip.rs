//! A ZIP archive of stored (uncompressed) files: several files as one browser download.
//!
//! Stored, not deflated: the archives hold f32 weights, which deflate by a few percent for
//! seconds of work in a browser tab. Every entry is dated 1980-01-01 (ZIP's first day), so an
//! archive's bytes depend on its files only. No ZIP64: the archive and each file stay under
//! 4 GiB, which a model trained in a browser does.

use super::crc32;

const LOCAL: u32 = 0x0403_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const END: u32 = 0x0605_4b50;
/// Version 2.0: what a stored entry in a folder needs.
const VERSION: u16 = 20;
/// General-purpose flag bit 11: names are UTF-8.
const UTF8: u16 = 1 << 11;
/// MS-DOS date of 1980-01-01: day 1, month 1, year 0 (1980).
const DATE: u16 = (1 << 5) | 1;

/// `files` (name within the archive, bytes) as the bytes of a ZIP archive, in that order.
pub fn zip_stored(files: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    let too_large = |what: &str| format!("{what}: too large for a ZIP archive (4 GiB at most)");
    if files.len() > usize::from(u16::MAX) {
        return Err(format!("{} files: too many for a ZIP archive", files.len()));
    }
    let total: usize = files.iter().map(|(n, b)| 76 + 2 * n.len() + b.len()).sum();
    let mut out = Vec::with_capacity(total + 22);
    let mut central = Vec::new();
    for (name, bytes) in files {
        let offset = u32::try_from(out.len()).map_err(|_| too_large(name))?;
        let size = u32::try_from(bytes.len()).map_err(|_| too_large(name))?;
        let name_len = u16::try_from(name.len()).map_err(|_| format!("{name}: name too long"))?;
        let crc = crc32(bytes);
        // The fields a local header and a central-directory entry share, from "version needed".
        let mut common = Vec::with_capacity(26);
        put16(&mut common, VERSION);
        put16(&mut common, UTF8);
        put16(&mut common, 0); // stored
        put16(&mut common, 0); // time 00:00:00
        put16(&mut common, DATE);
        put32(&mut common, crc);
        put32(&mut common, size); // compressed
        put32(&mut common, size);
        put16(&mut common, name_len);
        put16(&mut common, 0); // no extra field

        put32(&mut out, LOCAL);
        out.extend_from_slice(&common);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(bytes);

        put32(&mut central, CENTRAL);
        put16(&mut central, VERSION); // made by: MS-DOS attributes, version 2.0
        central.extend_from_slice(&common);
        put16(&mut central, 0); // comment
        put16(&mut central, 0); // disk
        put16(&mut central, 0); // internal attributes
        put32(&mut central, 0); // external attributes
        put32(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = u32::try_from(out.len()).map_err(|_| too_large("the archive"))?;
    let cd_size = u32::try_from(central.len()).map_err(|_| too_large("the archive"))?;
    out.extend_from_slice(&central);
    put32(&mut out, END);
    put16(&mut out, 0); // this disk
    put16(&mut out, 0); // the central directory's disk
    put16(&mut out, files.len() as u16); // entries on this disk
    put16(&mut out, files.len() as u16);
    put32(&mut out, cd_size);
    put32(&mut out, cd_offset);
    put16(&mut out, 0); // comment
    Ok(out)
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
