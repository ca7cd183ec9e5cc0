//! Measurements of the pure pipeline, shared by the criterion benches and `blackbox bench pipeline`.

pub mod channel;
pub mod cpu;
pub mod dht;
pub mod dir;
pub mod e2e;
pub mod job;
pub mod mount;
pub mod proofs;
pub mod s3;

use std::hint::black_box;
use std::time::Instant;

use blackbox_core::{hashtree, EncodingParams, FileEncoder, FileLayout, SegmentDecoder};
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};

pub use blackbox_util::tune_allocator;

/// Segment size of every measurement.
pub const SEG: usize = 1 << 20;

/// Deterministic pseudo-random bytes.
pub fn data(len: usize) -> Vec<u8> {
    blackbox_util::Xorshift::new(0x2545f4914f6cdd1d).bytes(len)
}

/// Runs `f` repeatedly for about `secs` seconds and returns bytes per second, given bytes per call.
pub fn rate(bytes: usize, secs: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f();
        calls += 1;
    }
    (calls as f64 * bytes as f64) / start.elapsed().as_secs_f64()
}

/// memcpy of one segment.
pub fn memcpy(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(src);
    black_box(dst);
}

/// ChaCha20-Poly1305 over one segment in place.
pub fn chacha(buf: &mut [u8]) {
    let c = ChaCha20Poly1305::new(&[7u8; 32].into());
    let tag = c.encrypt_in_place_detached(&Nonce::from([0u8; 12]), b"", buf);
    black_box(tag.ok());
}

/// BLAKE3 over one segment.
pub fn blake3_hash(buf: &[u8]) {
    black_box(hashtree::leaf(buf));
}

/// Reed-Solomon encoding of one segment into `n - k` recovery shards, reusing one encoder as the
/// pipeline does.
pub struct RsEncode {
    rs: reed_solomon_simd::ReedSolomonEncoder,
    padded: Vec<u8>,
    shard: usize,
    k: usize,
    n: usize,
}

impl RsEncode {
    /// Prepares k-of-n over one segment of `data`.
    pub fn new(data: &[u8], k: usize, n: usize) -> Self {
        let shard = data.len().div_ceil(k).div_ceil(64) * 64;
        let mut padded = data.to_vec();
        padded.resize(shard * k, 0);
        let rs = reed_solomon_simd::ReedSolomonEncoder::new(k, n - k, shard).expect("rs params");
        Self { rs, padded, shard, k, n }
    }

    /// Encodes the segment once.
    pub fn step(&mut self) {
        self.rs.reset(self.k, self.n - self.k, self.shard).expect("reset");
        for s in self.padded.chunks_exact(self.shard) {
            self.rs.add_original_shard(s).expect("shard");
        }
        let r = self.rs.encode().expect("encode");
        black_box(r.recovery(0));
    }
}

/// Encoder over a long file, fed one segment at a time.
pub struct Encoding {
    enc: FileEncoder,
    params: EncodingParams,
    seg: Vec<u8>,
}

impl Encoding {
    /// k-of-n with 1 MiB segments.
    pub fn new(k: usize, n: usize) -> Self {
        let params = EncodingParams::new(k, n, SEG as u32).expect("valid params");
        Self { enc: FileEncoder::new([3; 32], params, u64::MAX / 2), params, seg: data(SEG) }
    }

    /// Encrypts, codes and hashes one segment (everything an uploader's CPU does per segment).
    pub fn step(&mut self) {
        if self.enc.next_segment() > 1_000_000 {
            self.enc = FileEncoder::new([3; 32], self.params, u64::MAX / 2);
        }
        black_box(self.enc.encode_next(&self.seg).expect("encode"));
    }
}

/// One segment's blocks, ready to decode.
pub struct Decoding {
    layout: FileLayout,
    blocks: Vec<bytes::Bytes>,
    leaves: Vec<[u8; 32]>,
    dec: SegmentDecoder,
    k: usize,
}

impl Decoding {
    /// k-of-n with 1 MiB segments.
    pub fn new(k: usize, n: usize) -> Self {
        let params = EncodingParams::new(k, n, SEG as u32).expect("valid params");
        let mut enc = FileEncoder::new([3; 32], params, SEG as u64);
        let blocks = enc.encode_next(&data(SEG)).expect("encode");
        let leaves = blocks.iter().map(|b| hashtree::leaf(b)).collect();
        Self { layout: *enc.layout(), blocks, leaves, dec: SegmentDecoder::new(), k }
    }

    /// Verifies and decodes the segment from the shares `first..first + k` (0 = data shares).
    pub fn step(&mut self, first: usize) {
        let picked: Vec<(usize, &[u8])> = (first..first + self.k).map(|s| (s, self.blocks[s].as_ref())).collect();
        for (s, b) in &picked {
            assert_eq!(hashtree::leaf(b), self.leaves[*s]);
        }
        black_box(self.dec.decode(&[3; 32], &self.layout, 0, &picked).expect("decode"));
    }
}

/// Plaintext bytes/s of each part of the pipeline and of the whole, for one k-of-n.
pub struct Report {
    /// `k-of-n`.
    pub label: String,
    /// memcpy of a segment.
    pub memcpy: f64,
    /// ChaCha20-Poly1305 alone.
    pub chacha: f64,
    /// BLAKE3 alone.
    pub blake3: f64,
    /// Reed-Solomon encode alone.
    pub rs: f64,
    /// 1 / (1/chacha + 1/rs + n/k × 1/blake3).
    pub ceiling: f64,
    /// Whole encode.
    pub encode: f64,
    /// Decode from the k data shares (verify + decrypt).
    pub decode_data: f64,
    /// Decode from the last k shares (verify + RS decode + decrypt).
    pub decode_recovery: f64,
}

/// Measures the pipeline and its ceiling, `secs` seconds per figure, in this one run.
pub fn measure(k: usize, n: usize, secs: f64) -> Report {
    let src = data(SEG);
    let mut dst = vec![0u8; SEG];
    let memcpy_rate = rate(SEG, secs, || memcpy(&src, &mut dst));
    let mut buf = data(SEG);
    let chacha_rate = rate(SEG, secs, || chacha(&mut buf));
    let blake3_rate = rate(SEG, secs, || blake3_hash(&src));
    let mut rs = RsEncode::new(&src, k, n);
    let rs_rate = if n > k { rate(SEG, secs, || rs.step()) } else { f64::INFINITY };
    let ceiling = 1.0 / (1.0 / chacha_rate + 1.0 / rs_rate + (n as f64 / k as f64) / blake3_rate);
    let mut e = Encoding::new(k, n);
    let encode = rate(SEG, secs, || e.step());
    let mut d = Decoding::new(k, n);
    let decode_data = rate(SEG, secs, || d.step(0));
    let first_recovery = n - k;
    let decode_recovery = if n > k { rate(SEG, secs, || d.step(first_recovery)) } else { decode_data };
    Report {
        label: format!("{k}-of-{n}"),
        memcpy: memcpy_rate,
        chacha: chacha_rate,
        blake3: blake3_rate,
        rs: rs_rate,
        ceiling,
        encode,
        decode_data,
        decode_recovery,
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |r: f64| r / 1e6;
        let pct = |r: f64| 100.0 * r / self.ceiling;
        writeln!(f, "{} with 1 MiB segments, MB/s of plaintext on one core:", self.label)?;
        writeln!(
            f,
            "  parts: memcpy {:.0}, chacha20poly1305 {:.0}, blake3 {:.0}, reed-solomon encode {:.0}",
            mb(self.memcpy),
            mb(self.chacha),
            mb(self.blake3),
            mb(self.rs)
        )?;
        writeln!(f, "  ceiling 1/(1/chacha + 1/rs + n/k/blake3) = {:.0}", mb(self.ceiling))?;
        writeln!(
            f,
            "  encode (encrypt + RS + hash all shares): {:.0} = {:.0}% of ceiling",
            mb(self.encode),
            pct(self.encode)
        )?;
        writeln!(
            f,
            "  decode from data shares (verify + decrypt): {:.0} = {:.0}% of ceiling",
            mb(self.decode_data),
            pct(self.decode_data)
        )?;
        write!(
            f,
            "  decode from last k shares (verify + RS decode + decrypt): {:.0} = {:.0}% of ceiling",
            mb(self.decode_recovery),
            pct(self.decode_recovery)
        )
    }
}
