//! Proof of retrievability costs: proofs made and verified per second for one share of a file
//! stored with the default parameters, and what auditing costs in bandwidth.

use std::time::Instant;

use blackbox_core::{hashtree, EncodingParams, FileEncoder, ShareHeader};
use blackbox_proofs::{prove, verify, BlockTree, Challenge, Proof, DEFAULT_AUDITS_PER_DAY, DEFAULT_COUNT};

/// One share of a coded file, ready to be challenged.
pub struct Fixture {
    /// The file's header.
    pub header: ShareHeader,
    /// Blocks of share 0.
    pub blocks: Vec<Vec<u8>>,
    /// Its block tree.
    pub tree: BlockTree,
}

impl Fixture {
    /// Share 0 of a `size`-byte file coded 3-of-10 with 1 MiB segments.
    pub fn new(size: usize) -> Self {
        let params = EncodingParams::default();
        let mut enc = FileEncoder::new([7; 32], params, size as u64);
        let layout = *enc.layout();
        let data = crate::data(params.segment_size() as usize);
        let mut blocks = Vec::new();
        while !enc.is_done() {
            let len = layout.segment_len(enc.next_segment());
            let mut out = enc.encode_next(&data[..len]).expect("encode");
            blocks.push(out.swap_remove(0).to_vec());
        }
        let (header, _) = enc.finish().expect("finish");
        let tree = BlockTree::new(blocks.iter().map(|b| hashtree::leaf(b)).collect());
        Self { header, blocks, tree }
    }

    /// A challenge of `count` pieces with nonce `seed`.
    pub fn challenge(&self, seed: u64, count: u16) -> Challenge {
        let mut nonce = [0u8; 32];
        nonce[..8].copy_from_slice(&seed.to_le_bytes());
        Challenge { storage_index: [1; 32], share: 0, nonce, count }
    }

    /// The node's side: read the asked blocks (from memory here) and prove.
    pub fn prove(&self, c: &Challenge) -> Proof {
        prove(c, &self.header.layout(), &self.tree, |i| Ok::<_, ()>(self.blocks[i as usize].clone()))
            .expect("read")
            .expect("prove")
    }

    /// The auditor's side.
    pub fn verify(&self, c: &Challenge, p: &Proof) -> bool {
        verify(c, &self.header, p).is_ok()
    }
}

/// Measured proof rates and sizes.
#[derive(Debug, Clone)]
pub struct ProofReport {
    /// Pieces per default audit.
    pub count: u16,
    /// Default audits (32 pieces) proved per second on one core.
    pub proofs_per_sec: f64,
    /// Default audits verified per second on one core.
    pub verifies_per_sec: f64,
    /// Bytes of one encoded default proof.
    pub proof_bytes: usize,
    /// Audit bytes per day for one share (request + answer, default schedule).
    pub bytes_per_share_day: f64,
    /// Audit bytes per GB stored per day for a 1 GiB file (3-of-10: 10 shares of ~341 MiB).
    pub per_gb_day_large: f64,
    /// The same for 10 MiB files.
    pub per_gb_day_small: f64,
}

impl std::fmt::Display for ProofReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "proofs (3-of-10, 1 MiB segments, {} pieces of 1 KiB per audit): prove {:.0}/s, verify {:.0}/s on one core",
            self.count, self.proofs_per_sec, self.verifies_per_sec
        )?;
        writeln!(
            f,
            "one proof is {} bytes; {} audits a day = {:.2} MB per share per day",
            self.proof_bytes,
            DEFAULT_AUDITS_PER_DAY,
            self.bytes_per_share_day / 1e6
        )?;
        write!(
            f,
            "audit traffic per GB stored per day: {:.2} MB for 1 GiB files, {:.0} MB for 10 MiB files",
            self.per_gb_day_large / 1e6,
            self.per_gb_day_small / 1e6
        )
    }
}

/// Runs each side for about `seconds`.
pub fn measure_proofs(seconds: f64) -> ProofReport {
    let count = DEFAULT_COUNT;
    // A 64 MiB file: a share of 64 blocks of ~341 KiB (block tree depth 6, BLAKE3 depth 9).
    let fx = Fixture::new(64 << 20);
    let rate = |f: &mut dyn FnMut(u64)| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < seconds {
            f(n);
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let proofs_per_sec = rate(&mut |i| {
        std::hint::black_box(fx.prove(&fx.challenge(i, count)));
    });
    let proofs: Vec<(Challenge, Proof)> =
        (0..64).map(|i| (fx.challenge(i, count), fx.prove(&fx.challenge(i, count)))).collect();
    let verifies_per_sec = rate(&mut |i| {
        let (c, p) = &proofs[(i % 64) as usize];
        assert!(fx.verify(c, p));
    });
    let proof_bytes = proofs[0].1.encode().len();
    // Request: version, kind, si, share, nonce, count + 4-byte frame; answer framing ~10 bytes.
    let per_audit = (proof_bytes + 2 + 32 + 1 + 32 + 2 + 4 + 10) as f64;
    let bytes_per_share_day = per_audit * f64::from(DEFAULT_AUDITS_PER_DAY);
    let per_gb = |file: f64| {
        let params = EncodingParams::default();
        let share = blackbox_core::FileLayout::new(params, file as u64).share_len() as f64;
        let stored = share * params.n() as f64;
        bytes_per_share_day * params.n() as f64 / (stored / 1e9)
    };
    ProofReport {
        count,
        proofs_per_sec,
        verifies_per_sec,
        proof_bytes,
        bytes_per_share_day,
        per_gb_day_large: per_gb((1u64 << 30) as f64),
        per_gb_day_small: per_gb((10u64 << 20) as f64),
    }
}
