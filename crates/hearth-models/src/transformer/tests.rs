//! Host-side batch planning.

use super::slots_of;

/// A block at a time gives every position the slot the per-position rule gives (block
/// `table[pos / size]`, offset `pos % size`), for partial last blocks and scattered tables; a
/// table too short for `end` is an error naming the first position it misses.
#[test]
fn slots_of_matches_the_per_position_rule() {
    for size in [1usize, 3, 16] {
        let table: Vec<usize> = (0..9).map(|i| (i * 5 + 2) % 11).collect();
        for end in 0..=table.len() * size {
            let got = slots_of(&table, size, end).expect("the table covers end");
            let want: Vec<u32> = (0..end).map(|p| (table[p / size] * size + p % size) as u32).collect();
            assert_eq!(got, want, "block size {size}, end {end}");
        }
        let err = slots_of(&table, size, table.len() * size + 1).expect_err("one position past the table");
        assert!(err.to_string().contains(&format!("position {}", table.len() * size)), "{err}");
    }
}
