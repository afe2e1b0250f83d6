//! `ReorgWindow`: the recent block numbers with their hashes and parents.
//!
//! The window answers two questions: does a new header extend what we hold (validate parent),
//! and, when it does not, where do our branch and the node's branch meet (find fork point).
//! A fork point below the window cannot be found; the caller then halts instead of guessing.

use std::collections::BTreeMap;

use alloy::primitives::B256;

use super::BlockRef;

/// The recent-block window of one chain.
#[derive(Debug, Clone)]
pub struct ReorgWindow {
    capacity: u64,
    blocks: BTreeMap<u64, BlockRef>,
}

/// How a header relates to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowCheck {
    /// The window is empty or the header is the tip's child: append it.
    Extends,
    /// The header is already in the window with the same hash.
    Known,
    /// The header is at or below the tip with another hash, or is the tip's successor with
    /// another parent: our branch was replaced somewhere at or below its number.
    Conflicts,
    /// The header is more than one block above the tip: fetch the blocks in between first.
    Gap,
    /// The header is older than everything in the window: nothing can be said.
    BelowWindow,
}

/// The result of looking for the fork point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkSearch {
    /// Both branches share this block; everything above it in the window is orphaned.
    Found {
        /// The highest common block.
        fork_point: u64,
        /// The window's blocks above the fork point, highest first.
        orphaned: Vec<BlockRef>,
    },
    /// The node's hashes are needed for more (lower) numbers before a verdict.
    NeedMore {
        /// The next lower number to fetch from the node.
        next: u64,
    },
    /// No stored block matches the node's chain: the fork is older than the window.
    BeyondWindow {
        /// The lowest number the window holds.
        window_start: u64,
    },
}

impl ReorgWindow {
    /// An empty window keeping at most `capacity` blocks (at least 1).
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            blocks: BTreeMap::new(),
        }
    }

    /// A window filled from persisted blocks (any order); only the newest `capacity` are kept.
    pub fn from_blocks(capacity: u64, blocks: impl IntoIterator<Item = BlockRef>) -> Self {
        let mut window = Self::new(capacity);
        for block in blocks {
            window.blocks.insert(block.number, block);
        }
        window.trim();
        window
    }

    /// The newest block held.
    pub fn tip(&self) -> Option<&BlockRef> {
        self.blocks.values().next_back()
    }

    /// The oldest block held.
    pub fn start(&self) -> Option<&BlockRef> {
        self.blocks.values().next()
    }

    /// The block held at `number`.
    pub fn get(&self, number: u64) -> Option<&BlockRef> {
        self.blocks.get(&number)
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// True when no block is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// How `header` relates to the window (see [`WindowCheck`]).
    pub fn check(&self, header: &BlockRef) -> WindowCheck {
        let (Some(start), Some(tip)) = (self.start(), self.tip()) else {
            return WindowCheck::Extends;
        };
        if header.number < start.number {
            return WindowCheck::BelowWindow;
        }
        if header.number == tip.number + 1 {
            return if header.parent_hash == tip.hash {
                WindowCheck::Extends
            } else {
                WindowCheck::Conflicts
            };
        }
        if header.number > tip.number + 1 {
            return WindowCheck::Gap;
        }
        match self.blocks.get(&header.number) {
            Some(held) if held.hash == header.hash => WindowCheck::Known,
            _ => WindowCheck::Conflicts,
        }
    }

    /// True when a log found in block `number` with `hash` belongs to the chain the window
    /// holds. Blocks older than the window are accepted: they are deeper than any reorg the
    /// window is sized for.
    pub fn accepts(&self, number: u64, hash: &B256) -> bool {
        match self.start() {
            None => true,
            Some(start) if number < start.number => true,
            Some(_) => self.blocks.get(&number).is_some_and(|b| &b.hash == hash),
        }
    }

    /// Appends `header` if it extends the tip (returns false otherwise, leaving the window as is).
    pub fn push(&mut self, header: BlockRef) -> bool {
        if self.check(&header) != WindowCheck::Extends {
            return false;
        }
        self.blocks.insert(header.number, header);
        self.trim();
        true
    }

    /// Replaces the window's content with `header` alone (after a catch-up deeper than the window).
    pub fn reset(&mut self, header: BlockRef) {
        self.blocks.clear();
        self.blocks.insert(header.number, header);
    }

    /// Looks for the fork point given the node's canonical hashes for some numbers
    /// (`canonical(n)` is `None` when the node's hash for `n` is not known yet). Walks down from
    /// the tip: the first number whose stored hash equals the node's is the fork point.
    pub fn find_fork_point(&self, canonical: impl Fn(u64) -> Option<B256>) -> ForkSearch {
        let mut orphaned = Vec::new();
        for block in self.blocks.values().rev() {
            match canonical(block.number) {
                None => return ForkSearch::NeedMore { next: block.number },
                Some(hash) if hash == block.hash => {
                    return ForkSearch::Found {
                        fork_point: block.number,
                        orphaned,
                    }
                }
                Some(_) => orphaned.push(*block),
            }
        }
        ForkSearch::BeyondWindow {
            window_start: self.start().map_or(0, |b| b.number),
        }
    }

    /// Drops every block above `fork_point` (after a reorg) and returns them, highest first.
    pub fn rewind_to(&mut self, fork_point: u64) -> Vec<BlockRef> {
        let above = self.blocks.split_off(&(fork_point + 1));
        above.into_values().rev().collect()
    }

    fn trim(&mut self) {
        while self.blocks.len() as u64 > self.capacity {
            self.blocks.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A scripted chain: block n of branch `b` has hash (b, n).
    fn hash(branch: u8, number: u64) -> B256 {
        let mut bytes = [0u8; 32];
        bytes[0] = branch;
        bytes[24..].copy_from_slice(&number.to_be_bytes());
        B256::from(bytes)
    }

    fn block(branch: u8, number: u64, parent_branch: u8) -> BlockRef {
        BlockRef {
            number,
            hash: hash(branch, number),
            parent_hash: hash(parent_branch, number.saturating_sub(1)),
            timestamp: number,
        }
    }

    fn chain(branch: u8, from: u64, to: u64) -> ReorgWindow {
        let mut window = ReorgWindow::new(128);
        for n in from..=to {
            assert!(window.push(block(branch, n, branch)));
        }
        window
    }

    #[test]
    fn child_of_tip_extends_and_other_parent_conflicts() {
        let window = chain(0, 10, 20);
        assert_eq!(window.check(&block(0, 21, 0)), WindowCheck::Extends);
        assert_eq!(window.check(&block(1, 21, 1)), WindowCheck::Conflicts);
        assert_eq!(window.check(&block(0, 15, 0)), WindowCheck::Known);
        assert_eq!(window.check(&block(1, 15, 1)), WindowCheck::Conflicts);
        assert_eq!(window.check(&block(0, 23, 0)), WindowCheck::Gap);
        assert_eq!(window.check(&block(0, 5, 0)), WindowCheck::BelowWindow);
    }

    #[test]
    fn push_refuses_what_does_not_extend() {
        let mut window = chain(0, 1, 3);
        assert!(!window.push(block(1, 4, 1)));
        assert_eq!(window.tip().map(|b| b.number), Some(3));
    }

    #[test]
    fn capacity_keeps_only_the_newest_blocks() {
        let mut window = ReorgWindow::new(4);
        for n in 0..10 {
            window.push(block(0, n, 0));
        }
        assert_eq!(window.len(), 4);
        assert_eq!(window.start().map(|b| b.number), Some(6));
    }

    #[test]
    fn fork_point_is_highest_common_block_and_depth_counts_replaced_blocks() {
        let window = chain(0, 10, 20);
        // The node replaced 16..=20: blocks up to 15 are shared.
        let node: HashMap<u64, B256> = (10..=22)
            .map(|n| (n, if n <= 15 { hash(0, n) } else { hash(1, n) }))
            .collect();
        match window.find_fork_point(|n| node.get(&n).copied()) {
            ForkSearch::Found {
                fork_point,
                orphaned,
            } => {
                assert_eq!(fork_point, 15);
                assert_eq!(orphaned.len(), 5);
                assert_eq!(orphaned[0].number, 20);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn fork_search_asks_for_more_hashes_walking_down() {
        let window = chain(0, 10, 20);
        let node: HashMap<u64, B256> = (18..=20).map(|n| (n, hash(1, n))).collect();
        assert_eq!(
            window.find_fork_point(|n| node.get(&n).copied()),
            ForkSearch::NeedMore { next: 17 }
        );
    }

    #[test]
    fn fork_older_than_window_is_reported_not_guessed() {
        let window = chain(0, 10, 20);
        assert_eq!(
            window.find_fork_point(|n| Some(hash(9, n))),
            ForkSearch::BeyondWindow { window_start: 10 }
        );
    }

    #[test]
    fn rewind_returns_orphans_highest_first_and_allows_new_branch() {
        let mut window = chain(0, 10, 20);
        let orphans = window.rewind_to(17);
        assert_eq!(
            orphans.iter().map(|b| b.number).collect::<Vec<_>>(),
            vec![20, 19, 18]
        );
        assert!(window.push(block(1, 18, 0)));
        assert!(window.push(block(1, 19, 1)));
    }

    #[test]
    fn logs_are_accepted_only_on_the_held_branch() {
        let window = chain(0, 10, 20);
        assert!(window.accepts(12, &hash(0, 12)));
        assert!(!window.accepts(12, &hash(1, 12)));
        assert!(
            !window.accepts(25, &hash(0, 25)),
            "above the tip: not held yet"
        );
        assert!(window.accepts(3, &hash(7, 3)), "below the window: final");
    }

    #[test]
    fn restored_window_behaves_like_the_original() {
        let original = chain(0, 1, 50);
        let restored =
            ReorgWindow::from_blocks(128, (1..=50).rev().map(|n| *original.get(n).expect("held")));
        assert_eq!(restored.tip(), original.tip());
        assert_eq!(restored.check(&block(1, 51, 1)), WindowCheck::Conflicts);
    }
}
