//! Signed offers: what a node sells, at what price, until when, signed with its identity key.
//!
//! Byte format (version 2; version 1 had no fuel price): `1u8`, node public key (libp2p protobuf encoding, length-prefixed),
//! resources, availability, prices, bitcoin public key (33 bytes, compressed), region
//! (length-prefixed UTF-8), issued-at and expires-at (unix seconds), then the ed25519 signature
//! (length-prefixed) over `"blackbox offer v1" ++ everything before it`.

use bytes::Bytes;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;
use thiserror::Error;

use crate::bin::{Reader, Writer};
use crate::wire::WireError;

/// Version byte of the offer format.
pub const OFFER_VERSION: u8 = 2;
/// Largest encoded offer accepted.
pub const MAX_OFFER_LEN: usize = 1024;
/// Longest declared region.
pub const MAX_REGION_LEN: usize = 32;
/// Longest validity an offer may claim; longer ones are refused, so stale prices age out.
pub const MAX_VALIDITY_SECS: u64 = 7 * 24 * 3600;
/// Clock difference tolerated between a node and its clients.
pub const CLOCK_SKEW_SECS: u64 = 300;

const SIGNING_CONTEXT: &[u8] = b"blackbox offer v1";

/// Why an offer was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OfferError {
    /// The bytes are not an offer of a known version.
    #[error("malformed offer: {0}")]
    Malformed(String),
    /// The signature does not verify under the offer's own key.
    #[error("offer signature is invalid")]
    BadSignature,
    /// The offer was signed by another node than the one that served it.
    #[error("offer is signed by {signer}, but was served by {served_by}")]
    WrongNode { signer: String, served_by: String },
    /// The offer's validity has ended.
    #[error("offer expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
    /// The offer's times are impossible (issued in the future, or valid too long).
    #[error("offer validity {issued_at}..{expires_at} is not acceptable at {now}")]
    BadValidity { issued_at: u64, expires_at: u64, now: u64 },
    /// The key cannot sign (not ed25519).
    #[error("cannot sign offer: {0}")]
    Signing(String),
}

impl From<WireError> for OfferError {
    fn from(e: WireError) -> Self {
        OfferError::Malformed(e.to_string())
    }
}

/// Resources a node sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    /// Bytes of storage.
    pub storage_bytes: u64,
    /// Bytes served per month.
    pub bandwidth_bytes_per_month: u64,
    /// CPU, in thousandths of a core.
    pub cpu_millicores: u32,
    /// Bytes of RAM.
    pub ram_bytes: u64,
}

/// When the node is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Availability {
    /// At all times.
    #[default]
    Always,
    /// Every day between two UTC times, in minutes after midnight (may wrap past midnight).
    DailyUtc { start_minute: u16, end_minute: u16 },
    /// Whenever its owner is not using the machine.
    WhenIdle,
}

pub use blackbox_core::Prices;

/// An offer before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The node's identity key.
    pub node: PublicKey,
    /// What it sells.
    pub resources: Resources,
    /// When.
    pub availability: Availability,
    /// At what price.
    pub prices: Prices,
    /// Compressed secp256k1 key that payments go to.
    pub bitcoin_pubkey: [u8; 33],
    /// Declared region, for placement diversity (may be empty).
    pub region: String,
    /// Unix seconds when signed.
    pub issued_at: u64,
    /// Unix seconds after which the offer is void.
    pub expires_at: u64,
}

/// An offer with its node's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOffer {
    /// The signed content.
    pub offer: Offer,
    signature: Vec<u8>,
}

impl Offer {
    fn body(&self) -> Vec<u8> {
        let mut w = Writer(vec![OFFER_VERSION]);
        let r = &self.resources;
        let p = &self.prices;
        w.bytes(&self.node.encode_protobuf());
        w.u64(r.storage_bytes).u64(r.bandwidth_bytes_per_month).u32(r.cpu_millicores).u64(r.ram_bytes);
        match self.availability {
            Availability::Always => w.u8(0),
            Availability::DailyUtc { start_minute, end_minute } => w.u8(1).u16(start_minute).u16(end_minute),
            Availability::WhenIdle => w.u8(2),
        };
        w.u64(p.storage_sat_per_gb_month)
            .u64(p.egress_sat_per_gb)
            .u64(p.cpu_sat_per_core_hour)
            .u64(p.fuel_sat_per_gfuel);
        w.raw(&self.bitcoin_pubkey).bytes(self.region.as_bytes()).u64(self.issued_at).u64(self.expires_at);
        w.0
    }

    /// Signs the offer with the node's identity key (which must be the offer's `node` key).
    pub fn sign(self, key: &Keypair) -> Result<SignedOffer, OfferError> {
        if key.public() != self.node {
            return Err(OfferError::Signing("key does not match the offer's node".into()));
        }
        check_fields(&self)?;
        let mut msg = SIGNING_CONTEXT.to_vec();
        msg.extend(self.body());
        let signature = key.sign(&msg).map_err(|e| OfferError::Signing(e.to_string()))?;
        Ok(SignedOffer { offer: self, signature })
    }
}

fn check_fields(o: &Offer) -> Result<(), OfferError> {
    if o.region.len() > MAX_REGION_LEN {
        return Err(OfferError::Malformed(format!("region longer than {MAX_REGION_LEN} bytes")));
    }
    if !matches!(o.bitcoin_pubkey[0], 2 | 3) {
        return Err(OfferError::Malformed("bitcoin key is not a compressed public key".into()));
    }
    if let Availability::DailyUtc { start_minute, end_minute } = o.availability {
        if start_minute >= 1440 || end_minute >= 1440 {
            return Err(OfferError::Malformed("daily window minutes must be below 1440".into()));
        }
    }
    Ok(())
}

impl SignedOffer {
    /// The node that signed it.
    pub fn peer_id(&self) -> PeerId {
        self.offer.node.to_peer_id()
    }

    /// Encodes body and signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(self.offer.body());
        w.bytes(&self.signature);
        w.0
    }

    /// Strictly decodes an offer (checking its format, not yet its signature or times).
    pub fn decode(bytes: &[u8]) -> Result<Self, OfferError> {
        if bytes.len() > MAX_OFFER_LEN {
            return Err(OfferError::Malformed(format!("longer than {MAX_OFFER_LEN} bytes")));
        }
        let mut r = Reader::new(Bytes::copy_from_slice(bytes));
        let version = r.u8()?;
        if version != OFFER_VERSION {
            return Err(OfferError::Malformed(format!("unknown version {version}")));
        }
        let key = r.bytes()?;
        let node = PublicKey::try_decode_protobuf(&key).map_err(|e| OfferError::Malformed(e.to_string()))?;
        let resources = Resources {
            storage_bytes: r.u64()?,
            bandwidth_bytes_per_month: r.u64()?,
            cpu_millicores: r.u32()?,
            ram_bytes: r.u64()?,
        };
        let availability = match r.u8()? {
            0 => Availability::Always,
            1 => Availability::DailyUtc { start_minute: r.u16()?, end_minute: r.u16()? },
            2 => Availability::WhenIdle,
            other => return Err(OfferError::Malformed(format!("unknown availability {other}"))),
        };
        let prices = Prices {
            storage_sat_per_gb_month: r.u64()?,
            egress_sat_per_gb: r.u64()?,
            cpu_sat_per_core_hour: r.u64()?,
            fuel_sat_per_gfuel: r.u64()?,
        };
        let bitcoin_pubkey = r.array()?;
        let region = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| OfferError::Malformed("region".into()))?;
        let (issued_at, expires_at) = (r.u64()?, r.u64()?);
        let signature = r.bytes()?.to_vec();
        r.finish()?;
        let offer = Offer { node, resources, availability, prices, bitcoin_pubkey, region, issued_at, expires_at };
        check_fields(&offer)?;
        Ok(Self { offer, signature })
    }

    /// Checks the signature, that `served_by` is the signer, and that the offer is valid at `now`.
    pub fn verify(&self, served_by: &PeerId, now: u64) -> Result<(), OfferError> {
        let mut msg = SIGNING_CONTEXT.to_vec();
        msg.extend(self.offer.body());
        if !self.offer.node.verify(&msg, &self.signature) {
            return Err(OfferError::BadSignature);
        }
        let signer = self.peer_id();
        if signer != *served_by {
            return Err(OfferError::WrongNode { signer: signer.to_string(), served_by: served_by.to_string() });
        }
        let (issued_at, expires_at) = (self.offer.issued_at, self.offer.expires_at);
        if now >= expires_at {
            return Err(OfferError::Expired { expires_at, now });
        }
        let too_early = issued_at > now + CLOCK_SKEW_SECS;
        let too_long = expires_at.saturating_sub(issued_at) > MAX_VALIDITY_SECS;
        if too_early || too_long || expires_at <= issued_at {
            return Err(OfferError::BadValidity { issued_at, expires_at, now });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn offer(key: &Keypair) -> Offer {
        Offer {
            node: key.public(),
            resources: Resources {
                storage_bytes: 500 << 30,
                bandwidth_bytes_per_month: 1 << 40,
                cpu_millicores: 2000,
                ram_bytes: 4 << 30,
            },
            availability: Availability::DailyUtc { start_minute: 22 * 60, end_minute: 6 * 60 },
            prices: Prices {
                storage_sat_per_gb_month: 50,
                egress_sat_per_gb: 10,
                cpu_sat_per_core_hour: 5,
                fuel_sat_per_gfuel: 3,
            },
            bitcoin_pubkey: [2; 33],
            region: "eu-west".into(),
            issued_at: NOW,
            expires_at: NOW + 3600,
        }
    }

    #[test]
    fn signed_offer_round_trips_and_verifies() {
        let key = Keypair::generate_ed25519();
        let signed = offer(&key).sign(&key).unwrap();
        let bytes = signed.encode();
        assert!(bytes.len() <= MAX_OFFER_LEN);
        let back = SignedOffer::decode(&bytes).unwrap();
        assert_eq!(back, signed);
        back.verify(&key.public().to_peer_id(), NOW + 10).unwrap();
    }

    #[test]
    fn forged_expired_and_mismatched_offers_are_refused() {
        let key = Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let signed = offer(&key).sign(&key).unwrap();
        let bytes = signed.encode();

        // Any byte of the body changed (here: the storage price) breaks the signature.
        let mut forged = SignedOffer::decode(&bytes).unwrap();
        forged.offer.prices.storage_sat_per_gb_month = 1;
        assert_eq!(forged.verify(&me, NOW), Err(OfferError::BadSignature));

        // Another node serving this offer is caught.
        let other = PeerId::random();
        assert!(matches!(signed.verify(&other, NOW), Err(OfferError::WrongNode { .. })));

        // A node re-signing someone else's offer under its own key cannot claim the other's id.
        let thief = Keypair::generate_ed25519();
        assert!(offer(&key).sign(&thief).is_err());

        assert!(matches!(signed.verify(&me, NOW + 3600), Err(OfferError::Expired { .. })));
        let mut future = offer(&key);
        future.issued_at = NOW + 10_000;
        future.expires_at = NOW + 20_000;
        let future = future.sign(&key).unwrap();
        assert!(matches!(future.verify(&me, NOW), Err(OfferError::BadValidity { .. })));
        let mut forever = offer(&key);
        forever.expires_at = NOW + MAX_VALIDITY_SECS + 1;
        let forever = forever.sign(&key).unwrap();
        assert!(matches!(forever.verify(&me, NOW), Err(OfferError::BadValidity { .. })));
    }

    #[test]
    fn malformed_offers_are_refused() {
        let key = Keypair::generate_ed25519();
        let bytes = offer(&key).sign(&key).unwrap().encode();
        assert!(SignedOffer::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(SignedOffer::decode(&trailing).is_err());
        let mut version = bytes.clone();
        for v in [1, 3] {
            version[0] = v;
            assert!(SignedOffer::decode(&version).is_err());
        }
        let mut bad = offer(&key);
        bad.bitcoin_pubkey[0] = 4;
        assert!(bad.sign(&key).is_err());
        let mut bad = offer(&key);
        bad.region = "x".repeat(MAX_REGION_LEN + 1);
        assert!(bad.sign(&key).is_err());
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SignedOffer::decode(&bytes);
        }

        #[test]
        fn any_flipped_bit_is_refused(byte: usize, bit in 0u8..8) {
            let key = Keypair::generate_ed25519();
            let me = key.public().to_peer_id();
            let mut bytes = offer(&key).sign(&key).unwrap().encode();
            let at = byte % bytes.len();
            bytes[at] ^= 1 << bit;
            if let Ok(o) = SignedOffer::decode(&bytes) {
                prop_assert!(o.verify(&me, NOW).is_err());
            }
        }
    }
}
