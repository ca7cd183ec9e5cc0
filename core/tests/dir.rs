//! Directory formats: pinned bytes of leaves and branches, strict decoding (bounds, order, kinds,
//! truncation), sealed subdirectory write caps, and literal caps.

use blackbox_core::dir::{
    check_name, entry_len, open_write_cap, seal_write_cap, Child, DirError, Entry, Kind, Node, MAX_NAME_LEN, SEALED_LEN,
};
use blackbox_core::{LiteralCap, ReadCap, SlotWriteCap, MAX_LITERAL_LEN};
use proptest::prelude::*;

const PARENT: SlotWriteCap = SlotWriteCap { seed: [1; 32] };
const CHILD: SlotWriteCap = SlotWriteCap { seed: [2; 32] };
const NONCE: [u8; 12] = [9; 12];

fn file(cap: &str) -> Entry {
    Entry {
        kind: Kind::File,
        cap: cap.into(),
        sealed_write: None,
        size: 2,
        mtime_ns: 1_700_000_000_123_456_789,
        mode: 0o644,
        content_type: String::new(),
        metadata: Vec::new(),
    }
}

fn golden_leaf() -> Node {
    let a = Entry {
        content_type: "text/plain".into(),
        metadata: vec![("author".into(), "ann".into()), ("tag".into(), "x".into())],
        ..file("bb:lit:nbuq")
    };
    let sub = Entry {
        kind: Kind::Dir,
        cap: CHILD.read_cap().to_string(),
        sealed_write: Some(seal_write_cap(&PARENT, &CHILD, NONCE)),
        size: 0,
        mode: 0o755,
        ..file("")
    };
    Node::Leaf(vec![("a.txt".into(), a), ("sub".into(), sub)])
}

fn child(first: &str, fill: u8, k: u8, n: u8) -> Child {
    let cap = ReadCap { key: [fill; 32], root: [fill + 1; 32], k, n, size: 70_000 * fill as u64 };
    Child { first: first.into(), cap, count: 100 + fill as u64 }
}

fn golden_branch() -> Node {
    Node::Branch(vec![child("alpha", 3, 2, 3), child("m/ü", 5, 3, 5)])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const LEAF_HEX: &str = concat!(
    "010002000000",                                   // version 1, leaf, 2 entries
    "0500612e747874",                                 // "a.txt"
    "000b0062623a6c69743a6e62757100",                 // file, cap "bb:lit:nbuq", no write cap
    "020000000000000015cd853dfe9c9717a4010000",       // size 2, mtime, mode 0o644
    "0a00746578742f706c61696e",                       // content type "text/plain"
    "02000600617574686f720300616e6e0300746167010078", // 2 pairs: author=ann, tag=x
    "0300737562",                                     // "sub"
    "01",                                             // dir
    "740062623a736c6f742d726f3a3766716b366764373775656135656c676379716f746f726e6b7073656f787632657073",
    "796d356a676f6a6f756b797971786e77713a716534786f64766970756c76367676646b72746d677464367a7466793363",
    "75727774786470697335367968767864366a776f6b61", // cap: the child's bb:slot-ro:
    "01090909090909090909090909",                   // sealed write cap: flag, nonce, seed and tag
    "4f2776b41d4c5af8576fa0d62090d1ac731765694708dfc91911e32033a90c6c9b8450dc72718d5862fd196b984d9d1d",
    "000000000000000015cd853dfe9c9717ed010000", // size 0, mtime, mode 0o755
    "00000000",                                 // no content type, no metadata
);

const BRANCH_HEX: &str = concat!(
    "010102000000",                                                     // version 1, branch, 2 children
    "0500616c706861",                                                   // "alpha"
    "0303030303030303030303030303030303030303030303030303030303030303", // key
    "0404040404040404040404040404040404040404040404040404040404040404", // root
    "020350340300000000006700000000000000",                             // k 2, n 3, size 210000, count 103
    "04006d2fc3bc",                                                     // "m/ü"
    "0505050505050505050505050505050505050505050505050505050505050505", // key
    "0606060606060606060606060606060606060606060606060606060606060606", // root
    "030530570500000000006900000000000000",                             // k 3, n 5, size 350000, count 105
);

#[test]
fn golden_bytes_pin_the_leaf_format() {
    let node = golden_leaf();
    let bytes = node.encode();
    assert_eq!(&bytes[..6], &[1, 0, 2, 0, 0, 0], "version, leaf, two entries");
    assert_eq!(hex(&bytes), LEAF_HEX);
    assert_eq!(Node::decode(&bytes).unwrap(), node);
    assert_eq!(node.count(), 2);
    assert_eq!(node.first(), Some("a.txt"));
}

#[test]
fn golden_bytes_pin_the_branch_format() {
    let node = golden_branch();
    let bytes = node.encode();
    assert_eq!(&bytes[..6], &[1, 1, 2, 0, 0, 0], "version, branch, two children");
    assert_eq!(hex(&bytes), BRANCH_HEX);
    assert_eq!(Node::decode(&bytes).unwrap(), node);
    assert_eq!(node.count(), 103 + 105);
    assert_eq!(node.first(), Some("alpha"));
    assert_eq!(Node::decode(&Node::empty().encode()).unwrap(), Node::empty());
}

#[test]
fn bad_version_kind_and_length_are_refused() {
    for node in [golden_leaf(), golden_branch()] {
        let bytes = node.encode();
        for (at, value) in [(0, 0), (0, 2), (1, 2), (1, 0xff)] {
            let mut bad = bytes.clone();
            bad[at] = value;
            assert!(matches!(Node::decode(&bad), Err(DirError::Malformed(_))), "byte {at} = {value}");
        }
        for cut in 0..bytes.len() {
            assert!(Node::decode(&bytes[..cut]).is_err(), "truncated to {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Node::decode(&longer), Err(DirError::Malformed("trailing bytes")));
    }
    // Entry kind (after version, kind, count and the name "a.txt") and write-cap flag.
    let bytes = golden_leaf().encode();
    let mut bad = bytes.clone();
    bad[6 + 2 + 5] = 3;
    assert_eq!(Node::decode(&bad), Err(DirError::Malformed("entry kind")));
    let mut bad = bytes.clone();
    bad[6 + 2 + 5 + 1 + 2 + 11] = 2;
    assert_eq!(Node::decode(&bad), Err(DirError::Malformed("write cap flag")));
}

#[test]
fn huge_counts_with_short_input_are_refused() {
    for kind in [0, 1] {
        let mut bytes = vec![1, kind];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Node::decode(&bytes), Err(DirError::Malformed("count")));
        bytes.extend_from_slice(&[0; 64]);
        assert_eq!(Node::decode(&bytes), Err(DirError::Malformed("count")));
        // A count that passes the cheap bound still runs out of bytes.
        bytes[2..6].copy_from_slice(&35u32.to_le_bytes());
        assert!(Node::decode(&bytes).is_err());
    }
    let mut huge = vec![1, 0, 0, 0, 0, 0];
    huge.resize((1 << 20) + 1, 0);
    assert_eq!(Node::decode(&huge), Err(DirError::Malformed("node too long")));
}

#[test]
fn names_must_be_strictly_increasing() {
    let leaf = |names: &[&str]| Node::Leaf(names.iter().map(|n| (n.to_string(), file("c"))).collect());
    let branch = |names: &[&str]| Node::Branch(names.iter().map(|n| child(n, 1, 1, 1)).collect());
    for names in [&["b", "a"][..], &["a", "a"], &["a", "c", "b"], &["a/b", "a/b"], &["é", "e"]] {
        assert_eq!(Node::decode(&leaf(names).encode()), Err(DirError::Order), "{names:?}");
        assert_eq!(Node::decode(&branch(names).encode()), Err(DirError::Order), "{names:?}");
    }
    // Byte order, not any locale: "B" < "a" < "a/" < "é".
    let sorted = ["B", "a", "a/", "é"];
    assert_eq!(Node::decode(&leaf(&sorted).encode()).unwrap(), leaf(&sorted));
    // Metadata keys too.
    let mut e = file("c");
    e.metadata = vec![("k".into(), "1".into()), ("k".into(), "2".into())];
    let dup = Node::Leaf(vec![("x".into(), e)]);
    assert_eq!(Node::decode(&dup.encode()), Err(DirError::Order));
}

#[test]
fn names_must_be_1_to_1024_bytes() {
    assert!(check_name("").is_err());
    assert!(check_name("a/b").is_ok());
    assert!(check_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
    assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    for (name, ok) in [(String::new(), false), ("x".repeat(MAX_NAME_LEN), true), ("x".repeat(MAX_NAME_LEN + 1), false)]
    {
        let leaf = Node::Leaf(vec![(name.clone(), file("c"))]);
        assert_eq!(Node::decode(&leaf.encode()).is_ok(), ok, "leaf name of {} bytes", name.len());
        let branch = Node::Branch(vec![Child { first: name.clone(), ..child("a", 1, 1, 1) }]);
        assert_eq!(Node::decode(&branch.encode()).is_ok(), ok, "branch name of {} bytes", name.len());
    }
    // Not UTF-8.
    let mut bytes = Node::Leaf(vec![("ab".into(), file("c"))]).encode();
    bytes[8] = 0xff;
    assert_eq!(Node::decode(&bytes), Err(DirError::Malformed("name")));
}

#[test]
fn write_caps_only_on_directories() {
    for kind in [Kind::File, Kind::Symlink] {
        let e = Entry { kind, sealed_write: Some([0; SEALED_LEN]), ..file("c") };
        let bytes = Node::Leaf(vec![("x".into(), e)]).encode();
        assert_eq!(Node::decode(&bytes), Err(DirError::Malformed("write cap on a non-directory")));
    }
    let ok = Entry { kind: Kind::Symlink, cap: "../target".into(), ..file("") };
    let node = Node::Leaf(vec![("link".into(), ok)]);
    assert_eq!(Node::decode(&node.encode()).unwrap(), node);
}

#[test]
fn children_need_1_le_k_le_n() {
    for (k, n, ok) in [(0, 0, false), (0, 3, false), (4, 3, false), (1, 1, true), (3, 3, true), (255, 255, true)] {
        let node = Node::Branch(vec![child("a", 1, k, n)]);
        let got = Node::decode(&node.encode());
        if ok {
            assert_eq!(got.unwrap(), node);
        } else {
            assert_eq!(got, Err(DirError::Malformed("child k/n")), "k={k} n={n}");
        }
    }
}

#[test]
fn sealed_write_caps_open_only_for_their_parent_and_child() {
    let sealed = seal_write_cap(&PARENT, &CHILD, NONCE);
    assert_eq!(open_write_cap(&PARENT, &sealed, &CHILD.read_cap()), Ok(CHILD));
    // From the decoded entry, with the read cap parsed back from its text.
    let Node::Leaf(entries) = Node::decode(&golden_leaf().encode()).unwrap() else { unreachable!() };
    let sub = &entries[1].1;
    let read = sub.cap.parse().unwrap();
    assert_eq!(open_write_cap(&PARENT, &sub.sealed_write.unwrap(), &read), Ok(CHILD));

    let stranger = SlotWriteCap { seed: [3; 32] };
    assert_eq!(open_write_cap(&stranger, &sealed, &CHILD.read_cap()), Err(DirError::Seal));
    assert_eq!(open_write_cap(&CHILD, &sealed, &CHILD.read_cap()), Err(DirError::Seal));
    // The right parent, but an entry claiming another directory's read cap.
    assert_eq!(open_write_cap(&PARENT, &sealed, &stranger.read_cap()), Err(DirError::Seal));
    assert_eq!(open_write_cap(&PARENT, &sealed, &PARENT.read_cap()), Err(DirError::Seal));
    for i in 0..SEALED_LEN {
        let mut bad = sealed;
        bad[i] ^= 1;
        assert_eq!(open_write_cap(&PARENT, &bad, &CHILD.read_cap()), Err(DirError::Seal), "byte {i}");
    }
    assert_ne!(seal_write_cap(&PARENT, &CHILD, [8; 12]), sealed, "the nonce matters");
}

#[test]
fn literal_caps_are_bounded() {
    let max = LiteralCap { data: vec![7; MAX_LITERAL_LEN] };
    assert_eq!(max.to_string().parse::<LiteralCap>().unwrap(), max);
    let long = LiteralCap { data: vec![7; MAX_LITERAL_LEN + 1] };
    assert!(long.to_string().parse::<LiteralCap>().is_err());
    assert_eq!("bb:lit:".parse::<LiteralCap>().unwrap(), LiteralCap { data: Vec::new() });
}

fn name() -> impl Strategy<Value = String> {
    // Up to ten chars (at most 40 bytes): any scalar value, with '/' and ASCII made common.
    let c = prop_oneof![Just('/'), proptest::char::range('a', 'e'), any::<char>()];
    proptest::collection::vec(c, 1..=10).prop_map(|cs| cs.into_iter().collect())
}

fn entry() -> impl Strategy<Value = Entry> {
    let kind = prop_oneof![Just(Kind::File), Just(Kind::Dir), Just(Kind::Symlink)];
    let sealed = proptest::option::of(proptest::collection::vec(any::<u8>(), SEALED_LEN));
    let metadata = proptest::collection::btree_map(".{0,12}", ".{0,30}", 0..4);
    (kind, ".{0,100}", sealed, any::<(u64, u64, u32)>(), ".{0,20}", metadata).prop_map(
        |(kind, cap, sealed, (size, mtime_ns, mode), content_type, metadata)| Entry {
            kind,
            cap,
            sealed_write: sealed.filter(|_| kind == Kind::Dir).map(|s| s.try_into().unwrap()),
            size,
            mtime_ns,
            mode,
            content_type,
            metadata: metadata.into_iter().collect(),
        },
    )
}

fn read_cap() -> impl Strategy<Value = ReadCap> {
    (any::<[u8; 32]>(), any::<[u8; 32]>(), 1u8..=255, any::<u8>(), any::<u64>())
        .prop_map(|(key, root, k, n, size)| ReadCap { key, root, k, n: n.max(k), size })
}

proptest! {
    #[test]
    fn leaves_round_trip(entries in proptest::collection::btree_map(name(), entry(), 0..8)) {
        let entries: Vec<(String, Entry)> = entries.into_iter().collect();
        let mut len = Node::empty().encode().len();
        prop_assert_eq!(len, 6);
        for i in 0..entries.len() {
            let (name, e) = &entries[i];
            let grown = Node::Leaf(entries[..=i].to_vec()).encode().len();
            prop_assert_eq!(grown - len, entry_len(name, e));
            len = grown;
        }
        let node = Node::Leaf(entries);
        let bytes = node.encode();
        prop_assert_eq!(bytes.len(), len);
        prop_assert_eq!(Node::decode(&bytes).unwrap(), node);
    }

    #[test]
    fn branches_round_trip(children in proptest::collection::btree_map(name(), (read_cap(), any::<u64>()), 0..8)) {
        let children: Vec<Child> =
            children.into_iter().map(|(first, (cap, count))| Child { first, cap, count }).collect();
        let node = Node::Branch(children);
        prop_assert_eq!(Node::decode(&node.encode()).unwrap(), node);
    }

    #[test]
    fn decoder_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(node) = Node::decode(&bytes) {
            prop_assert_eq!(node.encode(), bytes);
        }
    }

    #[test]
    fn literal_caps_round_trip(data in proptest::collection::vec(any::<u8>(), 0..=MAX_LITERAL_LEN)) {
        let cap = LiteralCap { data };
        let text = cap.to_string();
        prop_assert!(text.starts_with("bb:lit:"));
        prop_assert_eq!(text.parse::<LiteralCap>().unwrap(), cap);
    }
}
