//! Known answers of the whole encoding: a fixed key and plaintext must always give the same read
//! cap (share root included), storage index and share bytes, so that any change to segmenting,
//! the AEAD, Reed-Solomon, the block trees or the header is caught. A failure here means stored
//! files would no longer decode: bump `FORMAT_VERSION` and keep the old path readable instead.

use blackbox_core::{storage_index, EncodingParams, FileEncoder};

/// Encodes `len` bytes of `(i * 7 + 3) mod 251` with key `[0x42; 32]`; returns the read cap text,
/// the storage index and a BLAKE3 digest over every block of every share in order.
fn encode(len: usize, k: usize, n: usize, seg: u32) -> (String, String, String) {
    let data: Vec<u8> = (0..len).map(|i| ((i * 7 + 3) % 251) as u8).collect();
    let key = [0x42; 32];
    let mut enc = FileEncoder::new(key, EncodingParams::new(k, n, seg).unwrap(), len as u64);
    let layout = *enc.layout();
    let mut shares = blake3::Hasher::new();
    let mut off = 0;
    for i in 0..layout.num_segments() {
        let l = layout.segment_len(i);
        for block in enc.encode_next(&data[off..off + l]).unwrap() {
            shares.update(&block);
        }
        off += l;
    }
    let (_, cap) = enc.finish().unwrap();
    let si: String = storage_index(&key).iter().map(|b| format!("{b:02x}")).collect();
    (cap.to_string(), si, shares.finalize().to_hex().to_string())
}

#[test]
fn three_of_ten_small_segments_with_a_short_tail() {
    let (cap, si, shares) = encode(100_003, 3, 10, 4096);
    assert_eq!(cap, "bb:chk:ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijba:kxv5rtgvqn6bugw4u4xcqlz4up3csrtmcbss7myw25efeiefgjfa:3:10:100003");
    assert_eq!(si, "7f0bb4f8f8d7fa7e75c4512264110fb15b82cd2af9b4482de5941754bab69fb8");
    assert_eq!(shares, "c459696bf2072a46112a5a2a3eb929ef5e5a375eed3d9b8ad6554da073bf925c");
}

#[test]
fn default_segments_and_an_empty_file() {
    let (cap, _, shares) = encode(2_500_000, 3, 10, blackbox_core::DEFAULT_SEGMENT_SIZE);
    assert_eq!(cap, "bb:chk:ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijba:awex4nbnilgiy7opgmky5sku6k3i7t7mpobfld7t4g6xbcfefdxa:3:10:2500000");
    assert_eq!(shares, "3b840536f4b3d9f1679b1dda65916a29f9585361ca31aa396e3627130b31b779");
    let (cap, _, _) = encode(0, 1, 1, 4096);
    assert_eq!(cap, "bb:chk:ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijba:hzwidvvtrpbz5eclhfyorb342agk5dva4bmn7qp2fvbwgcyzhf4q:1:1:0");
}
