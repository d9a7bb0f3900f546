//! What a page holds in memory, as the cache weighs it: every buffer at the size the
//! allocator gives it, compressed views included, plus what the cache spends to keep an
//! entry at all (benches/README.md, scenario n, has the measurements behind both).

use super::Page;

/// What keeping one entry costs besides the page's buffers: its key (in moka and twice in
/// the ledger), moka's entry and its order queues, the `Page` itself behind its `Arc`, its
/// list of views, the shared headers of bodies that were sent: about 1.6 KiB added up, kept
/// round. With it, the heap a process held for 283 pages (counted by a wrapping allocator,
/// scenario n's pages) was 1-2% under the sum of their weights.
pub const ENTRY_OVERHEAD: usize = 2048;

/// The block an allocation of `len` bytes takes: sizes past 64 bytes go up to the next
/// quarter of a power of two, as mimalloc's size classes do (glibc's blocks and mmaps are
/// no larger). A 22,243-byte view takes 24,576.
pub fn allocated(len: usize) -> usize {
    if len <= 64 {
        return len.next_multiple_of(16);
    }
    let step = 1 << ((usize::BITS - 1 - (len - 1).leading_zeros()) - 2);
    len.next_multiple_of(step)
}

impl Page {
    /// Bytes this page holds, compressed views included, as the cache weighs it.
    pub fn weight(&self) -> usize {
        let encoded = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        let views: usize = encoded
            .iter()
            .map(|(_, _, v)| allocated(v.body.len()) + allocated(v.etag.len()))
            .sum();
        allocated(self.body.len())
            + allocated(self.ends.capacity() * size_of::<u32>())
            + allocated(self.ts.capacity() * size_of::<i64>())
            + allocated(self.tie.capacity() * size_of::<u64>())
            + allocated(self.etag.len())
            + views
            + ENTRY_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::allocated;

    #[test]
    fn allocated_rounds_up_to_a_quarter_of_a_power_of_two() {
        for (len, block) in [
            (1, 16),
            (64, 64),
            (65, 80),
            (1000, 1024),
            (22_243, 24_576),
            (40_451, 40_960),
            (65_536, 65_536),
            (65_537, 81_920),
        ] {
            assert_eq!(allocated(len), block, "{len}");
        }
    }
}
