//! Unit tests of the firmware's manifest store, compiled for the host from the firmware's
//! own source file (it is plain Rust over heapless and keel-core).

#[path = "../../hal-qemu/src/store.rs"]
#[allow(dead_code)]
mod store;

use keel_core::mgmt::ErrorCode;
use store::{Entry, ManifestStore, PutOutcome, StoreError};

type Small = ManifestStore<2, 8>;

fn entries(s: &Small) -> Vec<(String, usize, u32)> {
    s.list()
        .map(|e: Entry<'_>| (e.name.to_string(), e.len, e.revision))
        .collect()
}

#[test]
fn put_creates_then_replaces_then_is_unchanged() {
    let mut s = Small::new();
    assert_eq!(s.put("a", b"one"), Ok(PutOutcome::Created));
    assert_eq!(s.put("a", b"two!"), Ok(PutOutcome::Replaced));
    assert_eq!(s.put("a", b"two!"), Ok(PutOutcome::Unchanged));
    assert_eq!(s.changes(), 2);
    assert_eq!(entries(&s), [("a".into(), 4, 2)]);
    assert_eq!(s.with_bytes("a", |b| b.to_vec()), Ok(b"two!".to_vec()));
}

#[test]
fn full_store_refuses_new_names_but_replaces_existing() {
    let mut s = Small::new();
    s.put("a", b"1").unwrap();
    s.put("b", b"2").unwrap();
    assert_eq!(s.put("c", b"3"), Err(StoreError::Full));
    assert_eq!(s.put("b", b"22"), Ok(PutOutcome::Replaced));
    assert_eq!(s.len(), 2);
}

#[test]
fn limits_are_named_errors_and_change_nothing() {
    let mut s = Small::new();
    assert_eq!(s.put("a", b"123456789"), Err(StoreError::TooLarge));
    assert_eq!(s.put("", b"1"), Err(StoreError::NameEmpty));
    assert_eq!(s.put(&"n".repeat(65), b"1"), Err(StoreError::NameTooLong));
    assert_eq!(s.put(&"n".repeat(64), b"12345678"), Ok(PutOutcome::Created));
    assert_eq!(s.changes(), 1);
    assert_eq!(
        ErrorCode::from(StoreError::TooLarge),
        ErrorCode::ManifestTooLarge
    );
}

#[test]
fn delete_frees_the_slot_and_counts_as_a_change() {
    let mut s = Small::new();
    s.put("a", b"1").unwrap();
    s.put("b", b"2").unwrap();
    assert_eq!(s.delete("a"), Ok(()));
    assert_eq!(s.delete("a"), Err(StoreError::NotFound));
    assert_eq!(s.with_bytes("a", |_| ()), Err(StoreError::NotFound));
    assert_eq!(s.changes(), 3);
    assert_eq!(s.put("c", b"3"), Ok(PutOutcome::Created));
    assert_eq!(entries(&s), [("c".into(), 1, 4), ("b".into(), 1, 2)]);
}

#[test]
fn manifests_share_the_arena_and_deletes_compact_it() {
    let mut s = ManifestStore::<4, 10>::new();
    s.put("a", b"aaa").unwrap();
    s.put("b", b"bbbb").unwrap();
    assert_eq!(s.free_bytes(), 3);
    // Does not fit what is left, though it fits an empty arena.
    assert_eq!(s.put("c", b"cccc"), Err(StoreError::Full));
    // Replacing reuses the old bytes' room.
    assert_eq!(s.put("b", b"BBBBBBB"), Ok(PutOutcome::Replaced));
    assert_eq!(s.free_bytes(), 0);
    s.delete("a").unwrap();
    assert_eq!(s.put("c", b"cc"), Ok(PutOutcome::Created));
    assert_eq!(s.with_bytes("b", |b| b.to_vec()), Ok(b"BBBBBBB".to_vec()));
    assert_eq!(s.with_bytes("c", |b| b.to_vec()), Ok(b"cc".to_vec()));
    assert_eq!(s.free_bytes(), 1);
}

#[test]
fn firmware_store_holds_12_names_in_a_3_kib_arena() {
    let s = store::FirmwareStore::new();
    assert_eq!((s.capacity(), s.slot_capacity()), (12, 2048));
    let size = std::mem::size_of::<store::FirmwareStore>();
    assert!(size < 6 * 1024, "{size}");
}
