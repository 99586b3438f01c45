//! The large values a store keeps (each event as received, each request built for
//! Button, each of Button's answers), packed at rest: zstd with a dictionary per kind
//! of value, since each value is a small JSON record that alone compresses poorly
//! (about 0.7 of its size) but shares most of its keys and words with every other of
//! its kind (0.2-0.4 of its size with the dictionary; BENCHMARKS.md has the figures).
//!
//! A packed value is one byte, [`ZSTD_V1`], then a zstd frame without its four-byte
//! magic number (the byte says what follows). Values written before packing (JSON
//! text: never that byte first) are read as they are, so old rows need no rewrite.
//! The dictionaries are raw content (no training data of anyone's events): the
//! Segment spec's event fields, Button's Orders and activity request fields, Button's
//! answers. They are part of the stored format: a dictionary is never changed, a new
//! one comes with a new leading byte.

use std::cell::RefCell;
use std::sync::LazyLock;

use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// The leading byte of a value packed with zstd and the version 1 dictionaries.
const ZSTD_V1: u8 = 1;
/// What every zstd frame starts with; packed values leave it out.
const MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();
/// zstd's level: the ratio barely grows past it for records this small, the time does.
const LEVEL: i32 = 3;
/// The largest value unpacked (a request body or an event is far smaller; this bounds
/// what a damaged row can make the reader allocate).
const MAX_UNPACKED: usize = 64 << 20;

/// Which kind of value: each has its own dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An event as received.
    Event = 0,
    /// A request body built for Button.
    Request = 1,
    /// Button's answer as a live-log entry keeps it.
    Response = 2,
}

const DICTIONARIES: [&[u8]; 3] = [
    include_bytes!("dictionaries/event.v1.json"),
    include_bytes!("dictionaries/request.v1.json"),
    include_bytes!("dictionaries/response.v1.json"),
];

static ENCODERS: LazyLock<[EncoderDictionary<'static>; 3]> =
    LazyLock::new(|| DICTIONARIES.map(|d| EncoderDictionary::copy(d, LEVEL)));
static DECODERS: LazyLock<[DecoderDictionary<'static>; 3]> =
    LazyLock::new(|| DICTIONARIES.map(DecoderDictionary::copy));

thread_local! {
    static COMPRESSORS: RefCell<Vec<Option<Compressor<'static>>>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSORS: RefCell<Vec<Option<Decompressor<'static>>>> = const { RefCell::new(Vec::new()) };
}

/// `value` as stored: packed, or as it is when packing would not make it smaller.
pub fn pack(kind: Kind, value: &[u8]) -> Vec<u8> {
    if value.is_empty() {
        return Vec::new();
    }
    let frame = COMPRESSORS.with(|cell| {
        let mut all = cell.borrow_mut();
        if all.len() <= kind as usize {
            all.resize_with(3, || None);
        }
        let slot = &mut all[kind as usize];
        if slot.is_none() {
            *slot = Compressor::with_prepared_dictionary(&ENCODERS[kind as usize]).ok();
        }
        slot.as_mut().and_then(|c| c.compress(value).ok())
    });
    match frame {
        Some(frame) if frame.starts_with(&MAGIC) && frame.len() - MAGIC.len() + 1 < value.len() => {
            let mut packed = Vec::with_capacity(frame.len() - MAGIC.len() + 1);
            packed.push(ZSTD_V1);
            packed.extend_from_slice(&frame[MAGIC.len()..]);
            packed
        }
        // Not smaller (or not packed at all): kept as it is, which any value whose
        // first byte is not ZSTD_V1 reads as. A value that starts with that byte is
        // packed regardless, so it cannot be taken for a packed one.
        Some(frame) if value[0] == ZSTD_V1 && frame.starts_with(&MAGIC) => {
            let mut packed = vec![ZSTD_V1];
            packed.extend_from_slice(&frame[MAGIC.len()..]);
            packed
        }
        _ => value.to_vec(),
    }
}

/// A stored value as it was before [`pack`]: unpacked, or as it is when it was kept so.
pub fn unpack(kind: Kind, stored: Vec<u8>) -> Result<Vec<u8>, std::io::Error> {
    if stored.first() != Some(&ZSTD_V1) {
        return Ok(stored);
    }
    let mut frame = Vec::with_capacity(stored.len() + MAGIC.len() - 1);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&stored[1..]);
    let size = zstd::zstd_safe::get_frame_content_size(&frame)
        .ok()
        .flatten()
        .map_or(MAX_UNPACKED, |n| (n as usize).min(MAX_UNPACKED));
    DECOMPRESSORS.with(|cell| {
        let mut all = cell.borrow_mut();
        if all.len() <= kind as usize {
            all.resize_with(3, || None);
        }
        let slot = &mut all[kind as usize];
        if slot.is_none() {
            *slot = Some(Decompressor::with_prepared_dictionary(
                &DECODERS[kind as usize],
            )?);
        }
        slot.as_mut().expect("made above").decompress(&frame, size)
    })
}

/// A stored text value (an event, an answer): unpacked, as text.
pub fn unpack_text(kind: Kind, stored: Vec<u8>) -> Result<String, std::io::Error> {
    String::from_utf8(unpack(kind, stored)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_as_they_went_in() {
        let event = br#"{"type":"track","event":"purchase","messageId":"m-1","timestamp":"2024-05-01T10:00:00Z","properties":{"order_id":"o-1","revenue":19.99,"currency":"USD","btn_ref":"srctok-abc","products":[{"product_id":"p-1","price":19.99,"quantity":1}]}}"#;
        for kind in [Kind::Event, Kind::Request, Kind::Response] {
            let packed = pack(kind, event);
            assert_eq!(packed[0], ZSTD_V1);
            assert_eq!(unpack(kind, packed).unwrap(), event);
        }
        // An event with the events' dictionary: well under half.
        let packed = pack(Kind::Event, event).len();
        assert!(
            packed < event.len() / 2,
            "{packed} bytes of {}",
            event.len()
        );
        // Rows written before packing read as they are.
        assert_eq!(unpack(Kind::Event, event.to_vec()).unwrap(), event);
        // Values that do not shrink, or are empty, are kept as they are; one that
        // starts with the packed marker is packed all the same.
        assert_eq!(pack(Kind::Request, b"{}"), b"{}");
        assert_eq!(pack(Kind::Request, b""), b"");
        let odd = [ZSTD_V1, b'x'];
        assert_eq!(
            unpack(Kind::Request, pack(Kind::Request, &odd)).unwrap(),
            odd
        );
    }

    #[test]
    fn a_damaged_value_is_an_error_not_a_panic() {
        assert!(unpack(Kind::Event, vec![ZSTD_V1, 1, 2, 3]).is_err());
    }
}
