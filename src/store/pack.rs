//! The large values a store keeps (each event as received, each request built for
//! Button, each of Button's answers), packed at rest: zstd with a dictionary per kind
//! of value, since each value is a small JSON record that alone compresses poorly
//! (about 0.7 of its size) but shares most of its keys and words with every other of
//! its kind (0.2-0.4 of its size with the dictionary; BENCHMARKS.md has the figures).
//!
//! A packed value is one byte that says which dictionaries packed it ([`ZSTD_V2`], or
//! [`ZSTD_V1`] for values written before version 2), then a zstd frame without its
//! four-byte magic number and without a dictionary id. Values written before packing
//! (JSON text: never one of those bytes first) are read as they are, so old rows need
//! no rewrite.
//!
//! The dictionaries hold no one's events. Version 1 is raw content: the Segment spec's
//! event fields, Button's Orders and activity request fields, Button's answers.
//! Version 2 is the same content with zstd's entropy tables for each kind, made from
//! made-up samples by `tools/dictgen` (which CI reruns to check the files): with them
//! a small value is packed with the tables as they are, where content alone made zstd
//! build its tables afresh for every value. They are part of the stored format: a
//! dictionary is never changed, a new one comes with a new leading byte.

use std::cell::RefCell;
use std::sync::LazyLock;

use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::CParameter;

/// The leading byte of a value packed with the version 1 dictionaries (read only).
const ZSTD_V1: u8 = 1;
/// The leading byte of a value packed with the version 2 dictionaries (what [`pack`]
/// writes).
const ZSTD_V2: u8 = 2;
/// What every zstd frame starts with; packed values leave it out.
const MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();
/// zstd's level: the ratio barely grows past it for records this small, the time does.
/// The version 2 tables were made for it (`tools/dictgen`).
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

const V1: [&[u8]; 3] = [
    include_bytes!("dictionaries/event.v1.json"),
    include_bytes!("dictionaries/request.v1.json"),
    include_bytes!("dictionaries/response.v1.json"),
];
const V2: [&[u8]; 3] = [
    include_bytes!("dictionaries/event.v2.zdict"),
    include_bytes!("dictionaries/request.v2.zdict"),
    include_bytes!("dictionaries/response.v2.zdict"),
];

static ENCODERS: LazyLock<[EncoderDictionary<'static>; 3]> =
    LazyLock::new(|| V2.map(|d| EncoderDictionary::copy(d, LEVEL)));
/// Indexed by version (0 for version 1), then by kind.
static DECODERS: LazyLock<[[DecoderDictionary<'static>; 3]; 2]> = LazyLock::new(|| {
    [
        V1.map(DecoderDictionary::copy),
        V2.map(DecoderDictionary::copy),
    ]
});

thread_local! {
    static COMPRESSORS: RefCell<[Option<Compressor<'static>>; 3]> = const { RefCell::new([None, None, None]) };
    static DECOMPRESSORS: RefCell<[[Option<Decompressor<'static>>; 3]; 2]> =
        const { RefCell::new([[None, None, None], [None, None, None]]) };
}

/// A compressor with `kind`'s version 2 dictionary, frames without its id (the leading
/// byte says which dictionary).
fn compressor(kind: Kind) -> std::io::Result<Compressor<'static>> {
    let mut c = Compressor::with_prepared_dictionary(&ENCODERS[kind as usize])?;
    c.set_parameter(CParameter::DictIdFlag(false))?;
    Ok(c)
}

/// Whether a stored value starting with `byte` is a packed one (of this release's
/// versions, or of a later release's): the control characters, save JSON's white
/// space, which no JSON text starts with.
fn reserved(byte: u8) -> bool {
    byte < 0x20 && !matches!(byte, b'\t' | b'\n' | b'\r')
}

/// `value` as stored: packed, or as it is when packing would not make it smaller.
pub fn pack(kind: Kind, value: &[u8]) -> Vec<u8> {
    if value.is_empty() {
        return Vec::new();
    }
    let frame = COMPRESSORS.with(|cell| {
        let slot = &mut cell.borrow_mut()[kind as usize];
        if slot.is_none() {
            *slot = compressor(kind).ok();
        }
        slot.as_mut().and_then(|c| c.compress(value).ok())
    });
    let marked = reserved(value[0]);
    match frame {
        // Packed when smaller. A value that starts with a byte reserved for packed ones
        // is packed regardless, so it cannot be taken for a packed one.
        Some(frame)
            if frame.starts_with(&MAGIC)
                && (marked || frame.len() - MAGIC.len() + 1 < value.len()) =>
        {
            let mut packed = Vec::with_capacity(frame.len() - MAGIC.len() + 1);
            packed.push(ZSTD_V2);
            packed.extend_from_slice(&frame[MAGIC.len()..]);
            packed
        }
        // Not smaller (or not packed at all): kept as it is.
        _ => value.to_vec(),
    }
}

/// A stored value as it was before [`pack`]: unpacked, or as it is when it was kept so.
pub fn unpack(kind: Kind, stored: Vec<u8>) -> Result<Vec<u8>, std::io::Error> {
    let version = match stored.first() {
        Some(&ZSTD_V1) => 0,
        Some(&ZSTD_V2) => 1,
        // Another reserved byte: a value packed by a later release (a dictionary this
        // one lacks), refused rather than taken for text.
        Some(&byte) if reserved(byte) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a value packed by a later release (leading byte {byte})"),
            ));
        }
        _ => return Ok(stored),
    };
    let mut frame = Vec::with_capacity(stored.len() + MAGIC.len() - 1);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&stored[1..]);
    let size = zstd::zstd_safe::get_frame_content_size(&frame)
        .ok()
        .flatten()
        .map_or(MAX_UNPACKED, |n| (n as usize).min(MAX_UNPACKED));
    DECOMPRESSORS.with(|cell| {
        let slot = &mut cell.borrow_mut()[version][kind as usize];
        if slot.is_none() {
            *slot = Some(Decompressor::with_prepared_dictionary(
                &DECODERS[version][kind as usize],
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
            assert_eq!(packed[0], ZSTD_V2);
            assert_eq!(packed[1] & 3, 0, "no dictionary id in the frame header");
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
        // starts with a packed marker is packed all the same.
        assert_eq!(pack(Kind::Request, b"{}"), b"{}");
        assert_eq!(pack(Kind::Request, b""), b"");
        for odd in [[ZSTD_V1, b'x'], [ZSTD_V2, b'x'], [3, b'x']] {
            assert_eq!(
                unpack(Kind::Request, pack(Kind::Request, &odd)).unwrap(),
                odd
            );
        }
    }

    #[test]
    fn values_packed_with_the_version_1_dictionaries_still_read() {
        let values: [(Kind, &[u8]); 3] = [
            (
                Kind::Event,
                br#"{"type":"track","event":"add_to_cart","messageId":"m-1","timestamp":"2024-05-01T10:00:00Z","anonymousId":"a-1","properties":{"currency":"USD","products":[{"product_id":"p-1","sku":"SKU-1","name":"Shoes","price":89.5,"quantity":1}]},"context":{"page":{"url":"https://shop.example/p/1?btn_ref=srctok-abc"},"ip":"203.0.113.7"}}"#,
            ),
            (
                Kind::Request,
                br#"{"order_id":"o-1","total":1999,"currency":"USD","btn_ref":"srctok-abc","line_items":[{"identifier":"p-1","total":1999,"amount":1999,"quantity":1}]}"#,
            ),
            (
                Kind::Response,
                br#"{"headers":{"content-type":"application/json","x-request-id":"r-1"},"body":"{\"meta\":{\"status\":\"ok\"}}","truncated":false}"#,
            ),
        ];
        for (kind, value) in values {
            // As version 1 wrote them: content-only dictionary, no magic number.
            let frame = zstd::bulk::Compressor::with_dictionary(LEVEL, V1[kind as usize])
                .unwrap()
                .compress(value)
                .unwrap();
            let mut stored = vec![ZSTD_V1];
            stored.extend_from_slice(&frame[MAGIC.len()..]);
            assert_eq!(unpack(kind, stored).unwrap(), value);
            // Version 2 is version 1's content with tables before it, and packs a
            // value of its kind smaller.
            assert!(V2[kind as usize].ends_with(V1[kind as usize]));
            let packed = pack(kind, value).len();
            assert!(
                packed < frame.len() - MAGIC.len() + 1,
                "{kind:?}: {packed} bytes"
            );
        }
    }

    #[test]
    fn a_damaged_value_is_an_error_not_a_panic() {
        for version in [ZSTD_V1, ZSTD_V2] {
            assert!(unpack(Kind::Event, vec![version, 1, 2, 3]).is_err());
        }
        // A leading byte of a later release's packing is refused, not taken for text;
        // text that starts with white space is text.
        assert!(unpack(Kind::Event, vec![3, 1, 2, 3]).is_err());
        assert_eq!(unpack(Kind::Event, b"\n{}".to_vec()).unwrap(), b"\n{}");
    }

    /// Values as earlier builds packed them, kept as bytes (version 1 by the build
    /// before version 2, version 2 by the first build that wrote it): a change to a
    /// dictionary that has landed, which would misread every row packed with it, fails
    /// here.
    #[test]
    fn values_packed_by_earlier_builds_read_the_same() {
        let value = br#"{"order_id":"o-1","total":1999,"currency":"USD","btn_ref":"srctok-abc","line_items":[{"identifier":"p-1","total":1999,"amount":1999,"quantity":1}]}"#;
        for stored in [
            "0120936d0100786f2d313139393961626322707d5d7d0900c66b000d03a40b015af0ee7211a962cd608e482485bc8d09470602",
            "022093550100f3000327262798c79ddc5aeb1c940309fcc644030a5c3a1d045aab9607ad50648e1aa430a00942b74806",
        ] {
            let stored = hex::decode(stored).unwrap();
            assert_eq!(unpack(Kind::Request, stored).unwrap(), value);
        }
    }

    /// The dictionaries are part of the stored format: these are the ones that landed.
    /// A new one comes with a new version and leading byte, never in place of these.
    #[test]
    fn the_dictionaries_are_the_ones_that_landed() {
        use sha2::{Digest, Sha256};
        let landed = [
            "384331437ef4b88f5d95ade9e217620919e2c7ce536df5001428759f42c496fd",
            "c3858883cfed3209e9bbb0aacdf337dd9cfd77a65c1e087d726f84b9ed35efac",
            "1975507bbfc3b7910dde6cb92386d33a4e112988c0691231433353c4f2ab4a5a",
            "f4b1aa7944c8df92f2915a4cb78777d3d4a4db3bacb6a2a5c7ccd76b69ff2389",
            "8493e3fe1f2542b8b4cdabe7c01dbe783bc52b6fdcab07cb24b0de94d587d171",
            "6322c6a905e1db174ee7937d64ad6448b8d83c55616727a51165a5b7e106077b",
        ];
        for (n, (dictionary, digest)) in V1.iter().chain(&V2).zip(landed).enumerate() {
            assert_eq!(
                hex::encode(Sha256::digest(dictionary)),
                digest,
                "dictionary {n} (V1 then V2, by kind) changed"
            );
        }
    }
}
