//! Builds the dictionaries the store packs values with (`src/store/dictionaries`), and
//! checks that the committed ones are what it builds.
//!
//! A version 2 dictionary is a version 1 dictionary's content (the field names and
//! words of its kind, reviewable JSON) with zstd's entropy tables for that kind of
//! value added, computed from made-up samples (`samples`). With the tables, a small
//! value is packed with them as they are, where a content-only dictionary makes zstd
//! build its tables afresh for every value: a third of the writer thread's time in
//! batch ingest (BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p dictgen            # writes the missing ones of src/store/dictionaries/*.v2.zdict
//! cargo run --release -p dictgen -- --check # fails if one is missing or differs
//! ```
//! Both print what the dictionaries gain on other samples than those they were made
//! from, and both fail where a file differs from what they build: never overwritten.
//! A dictionary is part of the stored format: once one has landed, a change to it (or
//! to what builds it) needs a new version and a new leading byte in `store/pack.rs`.

mod samples;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use samples::Rng;
use zstd::bulk::Compressor;
use zstd::dict::EncoderDictionary;

/// zstd's level, as `store/pack.rs` packs with (the tables are made for one level).
const LEVEL: i32 = 3;
/// How many samples make the tables, and how many other ones measure them.
const TRAIN: usize = 4000;
const MEASURE: usize = 2000;
const TRAIN_SEED: u64 = 0x6275_7474_6f6e_0001;
const MEASURE_SEED: u64 = 0x6275_7474_6f6e_0002;

#[derive(Clone, Copy)]
enum Kind {
    Event,
    Request,
    Response,
}

const KINDS: [(Kind, &str); 3] = [
    (Kind::Event, "event"),
    (Kind::Request, "request"),
    (Kind::Response, "response"),
];

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("unknown argument {other:?}; usage: dictgen [--check]");
            return ExitCode::from(2);
        }
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../src/store/dictionaries");
    let mut differ = false;
    println!(
        "{:<9} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "kind", "bytes", "v1 bytes", "v2 bytes", "v2 / v1", "v1 ns", "v2 ns"
    );
    for (index, (kind, name)) in KINDS.into_iter().enumerate() {
        let content =
            std::fs::read(dir.join(format!("{name}.v1.json"))).expect("the v1 dictionary");
        let made = finalize(
            &content,
            &samples(kind, TRAIN_SEED, TRAIN),
            0x6275_7402 + index as u32,
        );
        let path = dir.join(format!("{name}.v2.zdict"));
        match std::fs::read(&path) {
            Ok(committed) if committed == made => {}
            Ok(_) => {
                eprintln!(
                    "{}: not what dictgen builds. A dictionary that has landed never \
                     changes (stored values name it by their leading byte only): if the \
                     samples, the blueprint or libzstd changed, keep this file and add a \
                     new version (dictionaries, leading byte) in store/pack.rs",
                    path.display()
                );
                differ = true;
            }
            Err(_) if check => {
                eprintln!("{}: missing", path.display());
                differ = true;
            }
            Err(_) => std::fs::write(&path, &made).expect("write the dictionary"),
        }
        measure(name, &content, &made, &samples(kind, MEASURE_SEED, MEASURE));
    }
    if differ {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `n` made-up values of `kind`.
fn samples(kind: Kind, seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for tried in 0.. {
        if out.len() == n {
            break;
        }
        // Most events map; if none did, the blueprint changed and the samples with it.
        assert!(
            tried < 4 * n,
            "the default blueprint maps too few of the made-up events"
        );
        let event = samples::event(&mut rng);
        match kind {
            Kind::Event => out.push(event.into_bytes()),
            Kind::Request | Kind::Response => {
                let app = format!("app-{:x}", seed % 0xffff + out.len() as u64 % 7);
                let Some(request) = samples::request(&event, &app) else {
                    continue;
                };
                if matches!(kind, Kind::Request) {
                    out.push(request);
                } else {
                    out.push(samples::response(&mut rng, &request));
                }
            }
        }
    }
    out
}

/// `content` with zstd's entropy tables for values like `samples` (the dictionary
/// format's header); the content is kept whole.
#[allow(unsafe_code)]
fn finalize(content: &[u8], samples: &[Vec<u8>], id: u32) -> Vec<u8> {
    let flat: Vec<u8> = samples.concat();
    let sizes: Vec<usize> = samples.iter().map(Vec::len).collect();
    let mut out = vec![0u8; content.len() + 64 * 1024];
    let params = zstd_sys::ZDICT_params_t {
        compressionLevel: LEVEL,
        notificationLevel: 0,
        dictID: id,
    };
    // SAFETY: every pointer is to a live buffer of the length passed with it, `sizes`
    // sums to `flat.len()`, and `out` does not overlap the inputs.
    let written = unsafe {
        zstd_sys::ZDICT_finalizeDictionary(
            out.as_mut_ptr().cast(),
            out.len(),
            content.as_ptr().cast(),
            content.len(),
            flat.as_ptr().cast(),
            sizes.as_ptr(),
            sizes.len() as u32,
            params,
        )
    };
    // SAFETY: a plain query of a return code.
    assert!(
        unsafe { zstd_sys::ZDICT_isError(written) } == 0,
        "ZDICT_finalizeDictionary failed"
    );
    out.truncate(written);
    assert!(out.ends_with(content), "the content is kept whole");
    out
}

/// Mean sizes and packing times on `values`, with each dictionary, as the store packs
/// (level 3, no dictionary id in the frame).
fn measure(name: &str, v1: &[u8], v2: &[u8], values: &[Vec<u8>]) {
    let raw: usize = values.iter().map(Vec::len).sum();
    let pack = |dict: &[u8]| {
        let prepared = EncoderDictionary::copy(dict, LEVEL);
        let mut c = Compressor::with_prepared_dictionary(&prepared).expect("a compressor");
        c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))
            .expect("a parameter");
        // Once to warm up, then timed.
        let bytes: usize = values
            .iter()
            .map(|v| c.compress(v).expect("packs").len())
            .sum();
        let started = Instant::now();
        for _ in 0..3 {
            for v in values {
                std::hint::black_box(c.compress(v).expect("packs"));
            }
        }
        let ns = started.elapsed().as_nanos() as f64 / (3 * values.len()) as f64;
        (bytes as f64 / values.len() as f64, ns)
    };
    let (b1, t1) = pack(v1);
    let (b2, t2) = pack(v2);
    println!(
        "{name:<9} {:>8.0} {b1:>9.1} {b2:>9.1} {:>9.3} {t1:>10.0} {t2:>10.0}",
        raw as f64 / values.len() as f64,
        b2 / b1
    );
}
