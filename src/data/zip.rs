//! Reads the one CSV inside a Binance dump archive (`BTCUSDT-15m-2024-01.zip`) as a stream.
//! Only what those archives use: a single entry, stored or deflated, no ZIP64, no encryption.
//! The entry's size and CRC-32 come from the central directory and are checked at the end of
//! the stream, so a truncated or damaged download is an error, not a shorter history.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::Crc;
use flate2::bufread::DeflateDecoder;

use super::DataError;

const EOCD_SIG: u32 = 0x0605_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The entry as the central directory describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    method: u16,
    flags: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_header: u64,
}

fn bad(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Malformed { path: path.to_path_buf(), line: 0, reason: reason.into() }
}

fn read_exact_at(file: &mut File, at: u64, len: usize) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(at))?;
    let mut buf = vec![0u8; len];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// Finds the end-of-central-directory record and the single entry it lists.
fn find_entry(file: &mut File, path: &Path) -> Result<Entry, DataError> {
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    let len = file.seek(SeekFrom::End(0)).map_err(io)?;
    // The record is 22 bytes plus a comment of at most 65535 bytes, at the very end.
    let tail_len = len.min(22 + 65_535);
    let tail = read_exact_at(file, len - tail_len, usize::try_from(tail_len).unwrap_or(0)).map_err(io)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(&tail, i) == Some(EOCD_SIG))
        .ok_or_else(|| bad(path, "not a zip archive (no end-of-central-directory record)"))?;
    let entries = u16_at(&tail, eocd + 10).unwrap_or(0);
    if entries != 1 {
        return Err(bad(path, format!("the archive holds {entries} files; a Binance kline dump holds one CSV")));
    }
    let cd_offset = u64::from(u32_at(&tail, eocd + 16).unwrap_or(u32::MAX));
    let cd = read_exact_at(file, cd_offset, 46).map_err(|_| bad(path, "damaged zip (central directory unreadable)"))?;
    if u32_at(&cd, 0) != Some(CENTRAL_SIG) {
        return Err(bad(path, "damaged zip (no central directory header)"));
    }
    let field = |at| u32_at(&cd, at).unwrap_or(u32::MAX);
    let entry = Entry {
        flags: u16_at(&cd, 8).unwrap_or(0),
        method: u16_at(&cd, 10).unwrap_or(u16::MAX),
        crc: field(16),
        compressed: u64::from(field(20)),
        size: u64::from(field(24)),
        local_header: u64::from(field(42)),
    };
    if entry.compressed == u64::from(u32::MAX) || entry.size == u64::from(u32::MAX) {
        return Err(bad(path, "ZIP64 archives are not supported"));
    }
    if entry.flags & 1 != 0 {
        return Err(bad(path, "encrypted zip entries are not supported"));
    }
    Ok(entry)
}

/// A reader that checks the CRC-32 and size of what it yields once the input ends.
struct Checked<R> {
    inner: R,
    crc: Crc,
    expected_crc: u32,
    expected_size: u64,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if u64::from(self.crc.amount()) != self.expected_size & 0xFFFF_FFFF || self.crc.sum() != self.expected_crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "zip entry fails its CRC-32 or size check (damaged or truncated download?)",
                ));
            }
            return Ok(0);
        }
        self.crc.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Opens the CSV inside the archive `file` (already opened from `path`), streaming it through
/// `wrap` (which sees the compressed bytes, e.g. to count them).
///
/// # Errors
/// Not a zip, more than one entry, unsupported features, unreadable headers.
pub fn open_entry<W: Read + 'static>(
    mut file: File,
    path: &Path,
    wrap: impl FnOnce(io::Take<File>) -> W,
) -> Result<Box<dyn Read>, DataError> {
    let entry = find_entry(&mut file, path)?;
    let local =
        read_exact_at(&mut file, entry.local_header, 30).map_err(|_| bad(path, "damaged zip (local header)"))?;
    if u32_at(&local, 0) != Some(LOCAL_SIG) {
        return Err(bad(path, "damaged zip (no local file header)"));
    }
    let skip = u64::from(u16_at(&local, 26).unwrap_or(0)) + u64::from(u16_at(&local, 28).unwrap_or(0));
    file.seek(SeekFrom::Start(entry.local_header + 30 + skip))
        .map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let raw = BufReader::with_capacity(1 << 16, wrap(file.take(entry.compressed)));
    let body: Box<dyn Read> = match entry.method {
        0 => Box::new(raw),
        8 => Box::new(DeflateDecoder::new(raw)),
        m => return Err(bad(path, format!("zip compression method {m} is not supported (stored or deflate only)"))),
    };
    Ok(Box::new(Checked { inner: body, crc: Crc::new(), expected_crc: entry.crc, expected_size: entry.size }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a one-entry zip (deflated when `deflate`), as Python's zipfile writes them.
    pub(crate) fn build_zip(name: &str, body: &[u8], deflate: bool) -> Vec<u8> {
        let data = if deflate {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        } else {
            body.to_vec()
        };
        let mut crc = Crc::new();
        crc.update(body);
        let method: u16 = if deflate { 8 } else { 0 };
        let mut out = Vec::new();
        let header = |out: &mut Vec<u8>, sig: u32, central: bool| {
            out.extend(sig.to_le_bytes());
            if central {
                out.extend(20u16.to_le_bytes());
            }
            out.extend(20u16.to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(method.to_le_bytes());
            out.extend([0u8; 4]);
            out.extend(crc.sum().to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((body.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
        };
        header(&mut out, LOCAL_SIG, false);
        out.extend(name.as_bytes());
        out.extend(&data);
        let cd = out.len() as u32;
        header(&mut out, CENTRAL_SIG, true);
        out.extend([0u8; 10]); // comment length, disk, internal and external attributes
        out.extend(0u32.to_le_bytes()); // local header offset
        out.extend(name.as_bytes());
        let cd_len = out.len() as u32 - cd;
        out.extend(EOCD_SIG.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend(1u16.to_le_bytes());
        out.extend(1u16.to_le_bytes());
        out.extend(cd_len.to_le_bytes());
        out.extend(cd.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    fn read_all(bytes: &[u8]) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        std::fs::write(&path, bytes).unwrap();
        let mut r = open_entry(File::open(&path).unwrap(), &path, |f| f).map_err(|e| e.to_string())?;
        let mut s = String::new();
        r.read_to_string(&mut s).map_err(|e| e.to_string())?;
        Ok(s)
    }

    #[test]
    fn reads_stored_and_deflated_entries_and_checks_the_crc() {
        let body = b"1,2,3\n4,5,6\n".repeat(100);
        for deflate in [false, true] {
            assert_eq!(read_all(&build_zip("x.csv", &body, deflate)).unwrap().as_bytes(), &body[..]);
        }
        let mut damaged = build_zip("x.csv", &body, false);
        damaged[40] ^= 0xFF;
        assert!(read_all(&damaged).unwrap_err().contains("CRC-32"));
        assert!(read_all(b"not a zip at all").unwrap_err().contains("not a zip"));
    }
}
