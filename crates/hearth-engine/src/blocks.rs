//! The KV block allocator: which cache blocks are free, and which a sequence holds.

/// Hands out fixed-size KV cache blocks by id. Blocks are plain indices into the cache tensors.
#[derive(Debug)]
pub struct BlockAllocator {
    block_size: usize,
    total: usize,
    /// Free block ids; popped from the end so recently freed (cache-warm) blocks are reused first.
    free: Vec<usize>,
}

impl BlockAllocator {
    pub fn new(total: usize, block_size: usize) -> Self {
        Self { block_size, total, free: (0..total).rev().collect() }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Fraction of blocks in use, 0..=1.
    pub fn usage(&self) -> f64 {
        if self.total == 0 { 0.0 } else { 1.0 - self.free.len() as f64 / self.total as f64 }
    }

    /// Blocks needed to hold `tokens` positions.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Grow `table` to cover `tokens` positions; all or nothing.
    pub fn grow(&mut self, table: &mut Vec<usize>, tokens: usize) -> bool {
        let needed = self.blocks_for(tokens).saturating_sub(table.len());
        if needed > self.free.len() {
            return false;
        }
        let start = self.free.len() - needed;
        table.extend(self.free.drain(start..).rev());
        true
    }

    /// Return every block of `table` to the pool.
    pub fn release(&mut self, table: &mut Vec<usize>) {
        self.free.append(table);
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
}
