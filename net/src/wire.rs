//! Wire messages of the storage protocol and their byte format.
//!
//! A message is `u32 LE length` then the payload: `version u8, kind u8, fields…`. Integers are little
//! endian; byte strings are `u32 LE length` then bytes. Every message is at most [`MAX_MESSAGE`]
//! bytes; decoding is strict (no trailing bytes, known version and kind, bounded counts).

use bytes::Bytes;
use thiserror::Error;

use crate::bin::{Reader, Writer};
use crate::PROTOCOL;

mod job;
pub use job::*;

/// Version byte of every message: 3 since the transport moved to TLS 1.3 (2 was noise-only; its
/// messages are refused by name).
pub const WIRE_VERSION: u8 = 3;
/// Largest payload accepted: one full block (≤ 1 MiB + padding) plus framing.
pub const MAX_MESSAGE: usize = (1 << 20) + (64 << 10);
/// Most leaf hashes in one response.
pub const MAX_LEAVES: u32 = 16 * 1024;
/// Most blocks asked in one read.
pub const MAX_BLOCKS: u32 = 64;
/// Longest error message carried.
pub const MAX_ERROR_TEXT: usize = 1024;
/// Longest encoded channel parameters or update carried.
pub const MAX_PAYMENT_FIELD: u32 = 256;
/// Longest signed offer carried when opening a channel.
pub const MAX_OFFER_FIELD: u32 = crate::offer::MAX_OFFER_LEN as u32;

/// Longest signed slot header carried.
pub const MAX_SLOT_HEADER: u32 = blackbox_core::slot::MAX_SLOT_HEADER_LEN as u32;
/// Most distinct versions one [`Response::Slot`] reports.
pub const MAX_SLOT_GROUPS: usize = 16;

/// One version of a slot at a node: its encoded signed header and the shares it is current for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotGroup {
    /// Share numbers.
    pub shares: Vec<u8>,
    /// The encoded `blackbox_core::SignedSlotHeader`.
    pub header: Bytes,
}

/// Names one upload in progress at a node (given by the node at allocation).
pub type UploadId = u64;

/// 32-byte storage index of a file.
pub type Si = [u8; 32];

/// What a client asks a storage node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Node health and space.
    Status,
    /// Reserve space for one share of a file with these parameters, leased for `lease_secs` from
    /// its commit (the node may shorten it to its own maximum).
    Allocate { si: Si, share: u8, k: u8, n: u8, segment_size: u32, size: u64, lease_secs: u32 },
    /// Consecutive blocks `start..start+blocks.len()` of upload `upload` of a share.
    WriteBlocks { si: Si, share: u8, upload: UploadId, start: u64, blocks: Vec<Bytes> },
    /// Finish an upload: the node checks every block against the header's root for the share.
    Commit { si: Si, share: u8, upload: UploadId, header: Bytes },
    /// Drop an unfinished upload.
    Abort { si: Si, share: u8, upload: UploadId },
    /// Which shares of `si` the node holds.
    ListShares { si: Si },
    /// The share header stored with a share.
    ReadHeader { si: Si, share: u8 },
    /// Leaf hashes `start..start+count` of a share's tree.
    ReadLeaves { si: Si, share: u8, start: u64, count: u32 },
    /// Blocks `start..start+count`; the node may return fewer (never zero) to fit one message.
    ReadBlocks { si: Si, share: u8, start: u64, count: u32 },
    /// The node's current signed offer.
    GetOffer,
    /// Prove possession of the pieces of a share that `nonce` selects (see `blackbox_proofs`).
    Challenge { si: Si, share: u8, nonce: [u8; 32], count: u16 },
    /// Extend the leases of every share of `si` the node holds to `lease_secs` from now (leases
    /// only grow: a shorter one leaves them as they are; the extension is billed).
    Renew { si: Si, lease_secs: u32 },
    /// Open a payment channel (encoded `blackbox_payments::ChannelParams`) funded on chain, at the
    /// prices of `offer` (a signed offer of this node, as the client verified it).
    OpenChannel { params: Bytes, offer: Bytes },
    /// `inner`, paid for by the channel of an update (encoded `blackbox_payments::ChannelUpdate`)
    /// signed by its payer, which proves the sender pays that channel; answered with a
    /// [`Response::Receipt`] of what the node charged the channel for `inner`.
    Paid { update: Bytes, inner: Box<Request> },
    /// The node's view of a channel (funding txid and output index): what it accepted and billed.
    /// Answered only inside a `Paid` envelope of that channel (to its payer).
    ChannelStatus { txid: [u8; 32], vout: u32 },
    /// Start a job (answered with [`Response::JobStarted`]); its fuel and the core-seconds it
    /// holds are charged to the envelope's channel as it runs, so it must come paid.
    JobStart(JobSpec),
    /// A job's progress: its streams from these offsets, fuel used and charged, and its end.
    /// The buyer accepts charges up to `accept_fuel` and `accept_core_secs` in all for the job
    /// (cumulative, so a retry never pays twice); the node charges what the job used up to them.
    JobPoll { job: u64, stdout_from: u64, stderr_from: u64, accept_fuel: u64, accept_core_secs: u64 },
    /// Bytes of an output file of an ended job from `offset` (answered with one block).
    JobOutput { job: u64, name: String, offset: u64 },
    /// Stop a job.
    JobCancel { job: u64 },
    /// The lease expiry of every share of `si` the node holds.
    Leases { si: Si },
    /// Reserve space for share `share` of a new version of slot `si`, as a compare-and-swap on the
    /// version it `replaces` (0: none): `header` is the version's signed slot header, checked
    /// against `verifying_key` (whose storage index must be `si`). Blocks then go to the upload
    /// under the version's storage index (`blackbox_core::slot::version_index`).
    SlotAllocate { si: Si, share: u8, verifying_key: [u8; 32], header: Bytes, replaces: u64, lease_secs: u32 },
    /// Make the upload the slot share's current version, if the slot still holds the replaced one.
    SlotCommit { si: Si, share: u8, upload: UploadId },
    /// The current version of every share of slot `si` the node holds.
    SlotRead { si: Si },
}

/// Node counters reported by [`Request::Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// Complete shares held.
    pub shares: u64,
    /// Uploads in progress (never visible to readers).
    pub pending: u64,
    /// Bytes used, including reservations of pending uploads.
    pub used: u64,
    /// Bytes the node may use.
    pub quota: u64,
}

/// Failure classes a node reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request could not be decoded or broke a limit.
    Malformed,
    /// No such share or upload.
    NotFound,
    /// Not enough space left.
    QuotaExceeded,
    /// The data does not match what was allocated or committed.
    Invalid,
    /// The node failed internally (disk error).
    Internal,
    /// The request must be paid for through a payment channel first.
    PaymentRequired,
    /// A compare-and-swap lost: the slot holds another version than the one the write replaces.
    Conflict,
}

impl ErrorCode {
    fn to_byte(self) -> u8 {
        match self {
            Self::Malformed => 1,
            Self::NotFound => 2,
            Self::QuotaExceeded => 3,
            Self::Invalid => 4,
            Self::Internal => 5,
            Self::PaymentRequired => 6,
            Self::Conflict => 7,
        }
    }

    fn from_byte(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            1 => Self::Malformed,
            2 => Self::NotFound,
            3 => Self::QuotaExceeded,
            4 => Self::Invalid,
            5 => Self::Internal,
            6 => Self::PaymentRequired,
            7 => Self::Conflict,
            _ => return Err(WireError::UnknownKind(b)),
        })
    }
}

/// What a storage node answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Done.
    Ok,
    /// Answer to [`Request::Status`].
    Status(NodeStatus),
    /// Space reserved for upload `upload`; `already_have` when the complete share is already
    /// stored (then nothing is reserved and `upload` is 0).
    Allocated { already_have: bool, upload: UploadId },
    /// Share numbers held.
    Shares(Vec<u8>),
    /// An encoded share header.
    Header(Bytes),
    /// Leaf hashes.
    Leaves(Vec<[u8; 32]>),
    /// Consecutive blocks from the requested start.
    Blocks(Vec<Bytes>),
    /// The request failed.
    Error { code: ErrorCode, message: String },
    /// An encoded signed offer (see `offer::SignedOffer`).
    Offer(Bytes),
    /// An encoded proof (see `blackbox_proofs::Proof`).
    Proof(Bytes),
    /// Leases renewed: how many shares, and their new expiry (Unix seconds).
    Renewed { shares: u32, expires: u64 },
    /// A channel's state at the node: cumulative satoshis accepted and billed, and the usage
    /// billed (byte-seconds stored, bytes served, core-seconds, fuel).
    Channel { paid: u64, owed: u64, stored: u128, served: u64, cpu: u64, fuel: u64 },
    /// The answer to a `Paid` request: the satoshis charged to the channel for it (0 when the
    /// request failed) and the channel's total owed after it.
    Receipt { charged: u64, owed: u64, inner: Box<Response> },
    /// Share numbers held with their lease expiry (Unix seconds).
    Leases(Vec<(u8, u64)>),
    /// The current versions of a slot's shares at a node: each signed slot header with the shares
    /// it is current for (highest sequence first, at most [`MAX_SLOT_GROUPS`]).
    Slot(Vec<SlotGroup>),
    /// A job was accepted and is starting.
    JobStarted { job: u64 },
    /// A job's report.
    Job(JobReport),
}

impl Response {
    /// An error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        if message.len() > MAX_ERROR_TEXT {
            let mut cut = MAX_ERROR_TEXT;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Self::Error { code, message }
    }
}

/// Why bytes are not a valid message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// Message longer than [`MAX_MESSAGE`].
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Ended before a field was complete.
    #[error("message truncated")]
    Truncated,
    /// Bytes left after the last field.
    #[error("trailing bytes after message")]
    Trailing,
    /// Unknown protocol version.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// A request on an older storage protocol than this build serves.
    #[error("{0} is no longer served: this node speaks {PROTOCOL}; upgrade blackbox")]
    OldProtocol(String),
    /// Unknown message kind or enum value.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A count is over its limit.
    #[error("count {0} over limit")]
    Count(u64),
    /// Text is not UTF-8.
    #[error("invalid text")]
    Text,
}

/// Splits the version and kind off a payload.
fn open(payload: Bytes) -> Result<(u8, Reader), WireError> {
    if payload.len() > MAX_MESSAGE {
        return Err(WireError::TooLarge(payload.len()));
    }
    let mut r = Reader::new(payload);
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    Ok((r.u8()?, r))
}

impl Request {
    /// Encodes the payload (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_parts().concat()
    }

    /// Encodes the payload as pieces to send back to back, so block bytes are never copied into
    /// a new buffer; their concatenation is exactly [`Request::encode`].
    pub fn encode_parts(&self) -> Vec<Bytes> {
        let w = match self {
            Request::Status => Writer::new(0),
            Request::Allocate { si, share, k, n, segment_size, size, lease_secs } => {
                let mut w = Writer::new(1);
                w.raw(si).u8(*share).u8(*k).u8(*n).u32(*segment_size).u64(*size).u32(*lease_secs);
                w
            }
            Request::WriteBlocks { si, share, upload, start, blocks } => {
                let mut w = Writer::new(2);
                w.raw(si).u8(*share).u64(*upload).u64(*start).u32(blocks.len() as u32);
                let mut parts = Vec::with_capacity(2 * blocks.len() + 1);
                for block in blocks {
                    w.u32(block.len() as u32);
                    parts.push(Bytes::from(std::mem::take(&mut w.0)));
                    parts.push(block.clone());
                }
                if !w.0.is_empty() {
                    parts.push(Bytes::from(w.0));
                }
                return parts;
            }
            Request::Commit { si, share, upload, header } => {
                let mut w = Writer::new(3);
                w.raw(si).u8(*share).u64(*upload).bytes(header);
                w
            }
            Request::Abort { si, share, upload } => {
                let mut w = Writer::new(4);
                w.raw(si).u8(*share).u64(*upload);
                w
            }
            Request::ListShares { si } => {
                let mut w = Writer::new(5);
                w.raw(si);
                w
            }
            Request::ReadHeader { si, share } => {
                let mut w = Writer::new(6);
                w.raw(si).u8(*share);
                w
            }
            Request::ReadLeaves { si, share, start, count } => {
                let mut w = Writer::new(7);
                w.raw(si).u8(*share).u64(*start).u32(*count);
                w
            }
            Request::ReadBlocks { si, share, start, count } => {
                let mut w = Writer::new(8);
                w.raw(si).u8(*share).u64(*start).u32(*count);
                w
            }
            Request::GetOffer => Writer::new(9),
            Request::Challenge { si, share, nonce, count } => {
                let mut w = Writer::new(10);
                w.raw(si).u8(*share).raw(nonce).u16(*count);
                w
            }
            Request::Renew { si, lease_secs } => {
                let mut w = Writer::new(11);
                w.raw(si).u32(*lease_secs);
                w
            }
            Request::OpenChannel { params, offer } => {
                let mut w = Writer::new(12);
                w.bytes(params).bytes(offer);
                w
            }
            Request::Paid { update, inner } => {
                let mut w = Writer::new(13);
                w.bytes(update);
                let mut parts = vec![Bytes::from(w.0)];
                parts.extend(inner.encode_parts());
                return parts;
            }
            Request::ChannelStatus { txid, vout } => {
                let mut w = Writer::new(14);
                w.raw(txid).u32(*vout);
                w
            }
            Request::JobStart(spec) => {
                let mut w = Writer::new(20);
                spec.write(&mut w);
                w
            }
            Request::JobPoll { job, stdout_from, stderr_from, accept_fuel, accept_core_secs } => {
                let mut w = Writer::new(21);
                w.u64(*job).u64(*stdout_from).u64(*stderr_from).u64(*accept_fuel).u64(*accept_core_secs);
                w
            }
            Request::JobOutput { job, name, offset } => {
                let mut w = Writer::new(22);
                w.u64(*job).bytes(name.as_bytes()).u64(*offset);
                w
            }
            Request::JobCancel { job } => {
                let mut w = Writer::new(23);
                w.u64(*job);
                w
            }
            Request::Leases { si } => {
                let mut w = Writer::new(16);
                w.raw(si);
                w
            }
            Request::SlotAllocate { si, share, verifying_key, header, replaces, lease_secs } => {
                let mut w = Writer::new(17);
                w.raw(si).u8(*share).raw(verifying_key).bytes(header).u64(*replaces).u32(*lease_secs);
                w
            }
            Request::SlotCommit { si, share, upload } => {
                let mut w = Writer::new(18);
                w.raw(si).u8(*share).u64(*upload);
                w
            }
            Request::SlotRead { si } => {
                let mut w = Writer::new(19);
                w.raw(si);
                w
            }
        };
        vec![Bytes::from(w.0)]
    }

    /// Strictly decodes a payload.
    pub fn decode(payload: Bytes) -> Result<Self, WireError> {
        let (kind, mut r) = open(payload)?;
        let req = match kind {
            0 => Request::Status,
            1 => Request::Allocate {
                si: r.array()?,
                share: r.u8()?,
                k: r.u8()?,
                n: r.u8()?,
                segment_size: r.u32()?,
                size: r.u64()?,
                lease_secs: r.u32()?,
            },
            2 => {
                let (si, share, upload, start) = (r.array()?, r.u8()?, r.u64()?, r.u64()?);
                let count = r.count(MAX_BLOCKS)?;
                let mut blocks = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    blocks.push(r.bytes()?);
                }
                Request::WriteBlocks { si, share, upload, start, blocks }
            }
            3 => Request::Commit { si: r.array()?, share: r.u8()?, upload: r.u64()?, header: r.bytes()? },
            4 => Request::Abort { si: r.array()?, share: r.u8()?, upload: r.u64()? },
            5 => Request::ListShares { si: r.array()? },
            6 => Request::ReadHeader { si: r.array()?, share: r.u8()? },
            7 => Request::ReadLeaves { si: r.array()?, share: r.u8()?, start: r.u64()?, count: r.count(MAX_LEAVES)? },
            8 => Request::ReadBlocks { si: r.array()?, share: r.u8()?, start: r.u64()?, count: r.count(MAX_BLOCKS)? },
            9 => Request::GetOffer,
            10 => Request::Challenge { si: r.array()?, share: r.u8()?, nonce: r.array()?, count: r.u16()? },
            11 => Request::Renew { si: r.array()?, lease_secs: r.u32()? },
            12 => Request::OpenChannel { params: r.bounded(MAX_PAYMENT_FIELD)?, offer: r.bounded(MAX_OFFER_FIELD)? },
            13 => {
                let update = r.bounded(MAX_PAYMENT_FIELD)?;
                let rest = r.rest();
                // Checked before decoding: envelopes never nest, so decoding never recurses deeper.
                if rest.get(1) == Some(&13) {
                    return Err(WireError::UnknownKind(13));
                }
                let inner = Request::decode_inner(rest)?;
                return Ok(Request::Paid { update, inner: Box::new(inner) });
            }
            14 => Request::ChannelStatus { txid: r.array()?, vout: r.u32()? },
            16 => Request::Leases { si: r.array()? },
            17 => Request::SlotAllocate {
                si: r.array()?,
                share: r.u8()?,
                verifying_key: r.array()?,
                header: r.bounded(MAX_SLOT_HEADER)?,
                replaces: r.u64()?,
                lease_secs: r.u32()?,
            },
            18 => Request::SlotCommit { si: r.array()?, share: r.u8()?, upload: r.u64()? },
            19 => Request::SlotRead { si: r.array()? },
            20 => Request::JobStart(JobSpec::read(&mut r)?),
            21 => Request::JobPoll {
                job: r.u64()?,
                stdout_from: r.u64()?,
                stderr_from: r.u64()?,
                accept_fuel: r.u64()?,
                accept_core_secs: r.u64()?,
            },
            22 => {
                let job = r.u64()?;
                let name = String::from_utf8(r.bounded(MAX_JOB_NAME)?.to_vec()).map_err(|_| WireError::Text)?;
                Request::JobOutput { job, name, offset: r.u64()? }
            }
            23 => Request::JobCancel { job: r.u64()? },
            other => return Err(WireError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(req)
    }

    /// Decodes a request nested in a `Paid` envelope (the rest of the payload after the update).
    fn decode_inner(rest: Bytes) -> Result<Self, WireError> {
        Request::decode(rest)
    }
}

impl Response {
    /// Encodes the payload (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let w = match self {
            Response::Ok => Writer::new(0),
            Response::Status(s) => {
                let mut w = Writer::new(1);
                w.u64(s.shares).u64(s.pending).u64(s.used).u64(s.quota);
                w
            }
            Response::Allocated { already_have, upload } => {
                let mut w = Writer::new(2);
                w.u8(*already_have as u8).u64(*upload);
                w
            }
            Response::Shares(list) => {
                let mut w = Writer::new(3);
                w.bytes(list);
                w
            }
            Response::Header(h) => {
                let mut w = Writer::new(4);
                w.bytes(h);
                w
            }
            Response::Leaves(leaves) => {
                let mut w = Writer::new(5);
                w.u32(leaves.len() as u32);
                for l in leaves {
                    w.raw(l);
                }
                w
            }
            Response::Blocks(blocks) => {
                let mut w = Writer::new(6);
                w.u32(blocks.len() as u32);
                for b in blocks {
                    w.bytes(b);
                }
                w
            }
            Response::Error { code, message } => {
                let mut w = Writer::new(7);
                w.u8(code.to_byte()).bytes(message.as_bytes());
                w
            }
            Response::Offer(o) => {
                let mut w = Writer::new(8);
                w.bytes(o);
                w
            }
            Response::Proof(p) => {
                let mut w = Writer::new(9);
                w.bytes(p);
                w
            }
            Response::Renewed { shares, expires } => {
                let mut w = Writer::new(10);
                w.u32(*shares).u64(*expires);
                w
            }
            Response::Channel { paid, owed, stored, served, cpu, fuel } => {
                let mut w = Writer::new(11);
                w.u64(*paid).u64(*owed).u64(*stored as u64).u64((*stored >> 64) as u64).u64(*served).u64(*cpu);
                w.u64(*fuel);
                w
            }
            Response::JobStarted { job } => {
                let mut w = Writer::new(15);
                w.u64(*job);
                w
            }
            Response::Job(report) => {
                let mut w = Writer::new(16);
                report.write(&mut w);
                w
            }
            Response::Slot(groups) => {
                let mut w = Writer::new(14);
                w.u32(groups.len() as u32);
                for g in groups {
                    w.bytes(&g.shares).bytes(&g.header);
                }
                w
            }
            Response::Leases(list) => {
                let mut w = Writer::new(13);
                w.u32(list.len() as u32);
                for (share, expires) in list {
                    w.u8(*share).u64(*expires);
                }
                w
            }
            Response::Receipt { charged, owed, inner } => {
                let mut w = Writer::new(12);
                w.u64(*charged).u64(*owed);
                let mut out = w.0;
                out.extend_from_slice(&inner.encode());
                return out;
            }
        };
        w.0
    }

    /// Strictly decodes a payload.
    pub fn decode(payload: Bytes) -> Result<Self, WireError> {
        let (kind, mut r) = open(payload)?;
        let resp = match kind {
            0 => Response::Ok,
            1 => Response::Status(NodeStatus { shares: r.u64()?, pending: r.u64()?, used: r.u64()?, quota: r.u64()? }),
            2 => {
                let already_have = match r.u8()? {
                    0 => false,
                    1 => true,
                    other => return Err(WireError::UnknownKind(other)),
                };
                Response::Allocated { already_have, upload: r.u64()? }
            }
            3 => Response::Shares(r.bytes()?.to_vec()),
            4 => Response::Header(r.bytes()?),
            5 => {
                let count = r.count(MAX_LEAVES)?;
                let mut leaves = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    leaves.push(r.array()?);
                }
                Response::Leaves(leaves)
            }
            6 => {
                let count = r.count(MAX_BLOCKS)?;
                let mut blocks = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    blocks.push(r.bytes()?);
                }
                Response::Blocks(blocks)
            }
            7 => {
                let code = ErrorCode::from_byte(r.u8()?)?;
                let text = r.bytes()?;
                if text.len() > MAX_ERROR_TEXT {
                    return Err(WireError::Count(text.len() as u64));
                }
                let message = String::from_utf8(text.to_vec()).map_err(|_| WireError::Text)?;
                Response::Error { code, message }
            }
            8 => Response::Offer(r.bytes()?),
            9 => Response::Proof(r.bytes()?),
            10 => Response::Renewed { shares: r.u32()?, expires: r.u64()? },
            11 => {
                let (paid, owed, lo, hi) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
                Response::Channel {
                    paid,
                    owed,
                    stored: u128::from(lo) | (u128::from(hi) << 64),
                    served: r.u64()?,
                    cpu: r.u64()?,
                    fuel: r.u64()?,
                }
            }
            15 => Response::JobStarted { job: r.u64()? },
            16 => Response::Job(JobReport::read(&mut r)?),
            14 => {
                let count = r.count(MAX_SLOT_GROUPS as u32)?;
                let mut groups = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let shares = r.bounded(256)?.to_vec();
                    groups.push(SlotGroup { shares, header: r.bounded(MAX_SLOT_HEADER)? });
                }
                Response::Slot(groups)
            }
            13 => {
                let count = r.count(256)?;
                let mut list = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    list.push((r.u8()?, r.u64()?));
                }
                Response::Leases(list)
            }
            12 => {
                let (charged, owed) = (r.u64()?, r.u64()?);
                let rest = r.rest();
                if rest.get(1) == Some(&12) {
                    return Err(WireError::UnknownKind(12));
                }
                let inner = Response::decode(rest)?;
                return Ok(Response::Receipt { charged, owed, inner: Box::new(inner) });
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests;
