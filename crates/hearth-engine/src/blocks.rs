//! The KV block allocator: which cache blocks are free, which a sequence holds, and which full blocks
//! hold a known token prefix (prefix caching).
//!
//! A full block's identity is a hash of its tokens chained with its parent block's hash, so two
//! sequences that start with the same tokens map their first blocks to the same ids and share them
//! (reference counted). A shared block is always full and never written again: sequences only write
//! at positions past the blocks they matched. When no sequence holds a hashed block any more it stays
//! cached but evictable; allocation takes plain free blocks first, then evicts the least recently
//! released cached one.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// Hash of a full block: its tokens chained with the previous block's hash.
pub type BlockHash = u64;

/// Chain hash of one full block of tokens after `parent` (0 for the first block).
pub fn block_hash(parent: BlockHash, tokens: &[u32]) -> BlockHash {
    // SipHash with fixed keys: stable within the process, which is all the cache needs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// Hands out fixed-size KV cache blocks by id. Blocks are plain indices into the cache tensors.
#[derive(Debug)]
pub struct BlockAllocator {
    block_size: usize,
    total: usize,
    /// Free blocks holding nothing reusable; popped from the end so recently freed (cache-warm)
    /// blocks are reused first.
    free: Vec<usize>,
    /// How many sequences hold each block.
    refs: Vec<u32>,
    /// The prefix hash and tokens of each registered (full, computed) block.
    registered: Vec<Option<(BlockHash, Vec<u32>)>>,
    /// Registered blocks by hash.
    by_hash: HashMap<BlockHash, usize>,
    /// Registered blocks nobody holds, by release order (oldest first): evicted in that order.
    evictable: BTreeMap<u64, usize>,
    /// Each evictable block's key in `evictable`.
    evictable_stamp: Vec<u64>,
    clock: u64,
}

impl BlockAllocator {
    pub fn new(total: usize, block_size: usize) -> Self {
        Self {
            block_size,
            total,
            free: (0..total).rev().collect(),
            refs: vec![0; total],
            registered: vec![None; total],
            by_hash: HashMap::new(),
            evictable: BTreeMap::new(),
            evictable_stamp: vec![0; total],
            clock: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Blocks that can be allocated now: plain free ones plus evictable cached ones.
    pub fn free_count(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// Cached prefix blocks nobody holds (reusable until evicted).
    pub fn cached_free_count(&self) -> usize {
        self.evictable.len()
    }

    /// Fraction of blocks held by sequences, 0..=1 (evictable cached blocks count as free).
    pub fn usage(&self) -> f64 {
        if self.total == 0 { 0.0 } else { 1.0 - self.free_count() as f64 / self.total as f64 }
    }

    /// Blocks needed to hold `tokens` positions.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Grow `table` to cover `tokens` positions; all or nothing.
    pub fn grow(&mut self, table: &mut Vec<usize>, tokens: usize) -> bool {
        let needed = self.blocks_for(tokens).saturating_sub(table.len());
        if needed > self.free_count() {
            return false;
        }
        for _ in 0..needed {
            let Some(block) = self.take_block() else { return false };
            self.refs[block] = 1;
            table.push(block);
        }
        true
    }

    fn take_block(&mut self) -> Option<usize> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        let (_, block) = self.evictable.pop_first()?;
        self.unregister(block);
        Some(block)
    }

    fn unregister(&mut self, block: usize) {
        if let Some((hash, _)) = self.registered[block].take() {
            self.by_hash.remove(&hash);
        }
    }

    /// Give every block of `table` back. Blocks still held elsewhere stay; cached ones become
    /// evictable, the last block of a chain first (it is the least likely to be shared).
    pub fn release(&mut self, table: &mut Vec<usize>) {
        for block in table.drain(..).rev() {
            self.refs[block] = self.refs[block].saturating_sub(1);
            if self.refs[block] > 0 {
                continue;
            }
            if self.registered[block].is_some() {
                self.clock += 1;
                self.evictable_stamp[block] = self.clock;
                self.evictable.insert(self.clock, block);
            } else {
                self.free.push(block);
            }
        }
    }

    /// Take the cached blocks matching the full blocks `hashes` of `tokens` (in order, stopping at the
    /// first miss) into the empty `table`; returns how many matched.
    pub fn match_prefix(&mut self, table: &mut Vec<usize>, hashes: &[BlockHash], tokens: &[u32]) -> usize {
        debug_assert!(table.is_empty());
        for (i, hash) in hashes.iter().enumerate() {
            let Some(&block) = self.by_hash.get(hash) else { return i };
            let want = &tokens[i * self.block_size..(i + 1) * self.block_size];
            if self.registered[block].as_ref().is_none_or(|(_, t)| t != want) {
                return i; // a hash collision: treat as a miss
            }
            if self.refs[block] == 0 {
                self.evictable.remove(&self.evictable_stamp[block]);
            }
            self.refs[block] += 1;
            table.push(block);
        }
        hashes.len()
    }

    /// Record that `block` (held by the caller, now full and computed) holds the prefix `hash`.
    /// A block already cached under that hash (computed by a concurrent sequence) wins; this one stays private.
    pub fn register(&mut self, block: usize, hash: BlockHash, tokens: &[u32]) {
        if self.by_hash.contains_key(&hash) || self.registered[block].is_some() {
            return;
        }
        self.by_hash.insert(hash, block);
        self.registered[block] = Some((hash, tokens.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_is_all_or_nothing_and_release_returns_blocks() {
        let mut a = BlockAllocator::new(4, 16);
        let mut t1 = Vec::new();
        assert!(a.grow(&mut t1, 33)); // 3 blocks
        assert_eq!(t1.len(), 3);
        let mut t2 = Vec::new();
        assert!(!a.grow(&mut t2, 17)); // needs 2, 1 free
        assert!(t2.is_empty());
        assert_eq!(a.free_count(), 1);
        assert!(a.grow(&mut t1, 48)); // still 3 blocks: no new allocation
        assert_eq!(a.free_count(), 1);
        a.release(&mut t1);
        assert_eq!(a.free_count(), 4);
        assert!(t1.is_empty());
    }

    #[test]
    fn blocks_are_never_handed_out_twice() {
        let mut a = BlockAllocator::new(8, 4);
        let mut tables = vec![Vec::new(), Vec::new(), Vec::new()];
        for (i, t) in tables.iter_mut().enumerate() {
            assert!(a.grow(t, 4 + i * 4));
        }
        let mut all: Vec<usize> = tables.concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 1 + 2 + 3);
    }

    fn hashes(tokens: &[u32], bs: usize) -> Vec<BlockHash> {
        let mut parent = 0;
        tokens.chunks_exact(bs).map(|c| { parent = block_hash(parent, c); parent }).collect()
    }

    #[test]
    fn a_released_prefix_is_matched_shared_and_evicted_last_block_first() {
        let bs = 4;
        let mut a = BlockAllocator::new(4, bs);
        let tokens: Vec<u32> = (0..8).collect();
        let h = hashes(&tokens, bs);
        let mut t1 = Vec::new();
        assert!(a.grow(&mut t1, 8));
        a.register(t1[0], h[0], &tokens[..4]);
        a.register(t1[1], h[1], &tokens[4..8]);
        // A second sequence shares both blocks while the first still holds them.
        let mut t2 = Vec::new();
        assert_eq!(a.match_prefix(&mut t2, &h, &tokens), 2);
        assert_eq!(t2, t1);
        a.release(&mut t1);
        assert_eq!(a.free_count(), 2, "shared blocks stay held");
        a.release(&mut t2);
        assert_eq!(a.free_count(), 4);
        assert_eq!(a.cached_free_count(), 2);
        // Allocation takes plain free blocks first, then evicts the chain's last block.
        let mut t3 = Vec::new();
        assert!(a.grow(&mut t3, 12));
        let mut t4 = Vec::new();
        assert_eq!(a.match_prefix(&mut t4, &h, &tokens), 1, "only the first block survived");
        // A different prefix never matches.
        let other: Vec<u32> = (100..108).collect();
        let mut t5 = Vec::new();
        assert_eq!(a.match_prefix(&mut t5, &hashes(&other, bs), &other), 0);
    }

    #[test]
    fn a_duplicate_block_stays_private_and_is_plainly_freed() {
        let mut a = BlockAllocator::new(2, 2);
        let tokens = [1u32, 2];
        let h = block_hash(0, &tokens);
        let (mut t1, mut t2) = (Vec::new(), Vec::new());
        assert!(a.grow(&mut t1, 2) && a.grow(&mut t2, 2));
        a.register(t1[0], h, &tokens);
        a.register(t2[0], h, &tokens);
        a.release(&mut t2);
        assert_eq!(a.cached_free_count(), 0);
        a.release(&mut t1);
        assert_eq!(a.cached_free_count(), 1);
    }
}
