//! The reconciliation policy: pure functions over a transfer's state, the chain's progress and
//! the time. Nothing here touches the network or the database; the reconciler actor gathers the
//! inputs, calls [`decide`], and hands the resulting [`Step`]s to the store writer, which applies
//! each one only if the transfer is still in the state the step was decided from.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The status of a tracked transfer.
///
/// ```text
///  pending ──included──► confirming ──depth ≥ threshold, block canonical──► confirmed
///     │                     │  └──receipt status 0──► failed
///     │                     └──block orphaned──► reorged ──re-included──► confirming
///     │                                             └──not re-included within dropped_after──► failed(dropped)
///     └──another tx with the same sender and nonce mined──► failed(replaced)
/// ```
///
/// `stuck` is a side flag on any non-terminal status, not a status of its own. A reorg deeper than
/// the confirmation threshold is the one way out of `confirmed` (back to `reorged`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferStatus {
    /// Registered by a backend, not seen in a block yet. Next: confirming, failed, reorged (never).
    Pending,
    /// In a canonical block, not deep enough yet. Next: confirmed, failed, reorged.
    Confirming,
    /// Deep enough (or finalized). Terminal, except for a reorg deeper than the threshold.
    Confirmed,
    /// Reverted, replaced, dropped (or bounced on TON). Terminal.
    Failed,
    /// Its block was orphaned. Next: confirming (re-included), failed (dropped).
    Reorged,
}

impl TransferStatus {
    /// Every status, in the order of the `status` metric label.
    pub const ALL: [TransferStatus; 5] = [
        Self::Pending,
        Self::Confirming,
        Self::Confirmed,
        Self::Failed,
        Self::Reorged,
    ];

    /// The name stored in the database and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirming => "confirming",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
            Self::Reorged => "reorged",
        }
    }

    /// Parses a stored status.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Confirmed and failed transfers are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Confirmed | Self::Failed)
    }

    /// Whether `self → next` is a valid transition of the state machine.
    pub fn can_become(self, next: TransferStatus) -> bool {
        use TransferStatus::*;
        matches!(
            (self, next),
            (Pending, Confirming | Failed)
                | (Confirming, Confirmed | Failed | Reorged)
                | (Reorged, Confirming | Failed)
                // Only a reorg deeper than the confirmation threshold.
                | (Confirmed, Reorged)
        )
    }
}

impl fmt::Display for TransferStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a block counts as confirmed on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationRule {
    /// `tip - block + 1 >= n`: the block itself is the first confirmation.
    Depth(u64),
    /// At or below the node's `finalized` block.
    Finalized,
}

impl ConfirmationRule {
    /// The highest confirmed block given the indexed tip and the node's finalized block, or
    /// `None` when nothing is confirmed yet. Never above the tip: a block chainsync has not
    /// indexed cannot be confirmed by it.
    pub fn confirmed_height(self, tip: u64, finalized: Option<u64>) -> Option<u64> {
        match self {
            ConfirmationRule::Depth(depth) => {
                let depth = depth.max(1);
                (tip + 1).checked_sub(depth)
            }
            ConfirmationRule::Finalized => finalized.map(|f| f.min(tip)),
        }
    }

    /// The block at which a transfer included in `block` reaches the threshold under
    /// [`ConfirmationRule::Depth`] (`block + n - 1`); `None` for finality, which depends on the node.
    pub fn threshold_block(self, block: u64) -> Option<u64> {
        match self {
            ConfirmationRule::Depth(depth) => Some(block + depth.max(1) - 1),
            ConfirmationRule::Finalized => None,
        }
    }
}

/// The per-chain knobs of the policy (from the chain's configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcilePolicy {
    /// When a block is confirmed.
    pub rule: ConfirmationRule,
    /// A non-terminal transfer older than this is stuck.
    pub stuck_after: Duration,
    /// ... or this many blocks behind the tip.
    pub stuck_after_blocks: u64,
    /// A reorged transfer not re-included within this long fails as dropped.
    pub dropped_after: Duration,
    /// No new head for this long marks the chain stalled: its transfers are not blamed.
    pub head_stall_after: Duration,
}

/// What the chain looks like to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainView {
    /// Highest indexed block.
    pub tip: u64,
    /// Highest confirmed block under the chain's rule.
    pub confirmed: Option<u64>,
    /// Whether the head has not moved for `head_stall_after`.
    pub stalled: bool,
}

impl ChainView {
    /// Whether the head is stalled, given when it last moved.
    pub fn is_stalled(
        last_head_change: DateTime<Utc>,
        now: DateTime<Utc>,
        policy: &ReconcilePolicy,
    ) -> bool {
        elapsed(last_head_change, now) >= policy.head_stall_after
    }
}

/// What the node says about a watched transaction right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Not asked (log-derived transfers, or no answer this pass).
    Unknown,
    /// Mined: its receipt.
    Mined {
        /// Block number of the receipt.
        block: u64,
        /// Block hash of the receipt.
        block_hash: [u8; 32],
        /// `status = 1`.
        success: bool,
        /// The revert reason, when it could be read.
        revert_reason: Option<String>,
    },
    /// No receipt. `nonce_taken` is true when the sender's nonce has moved past the
    /// transaction's nonce, i.e. another transaction with that nonce was mined.
    NotMined {
        /// Another transaction used the nonce.
        nonce_taken: bool,
    },
}

/// The state of one tracked transfer, as the policy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferState {
    /// Current status.
    pub status: TransferStatus,
    /// Stuck side flag.
    pub stuck: bool,
    /// The block it is included in, if any.
    pub block: Option<u64>,
    /// The block hash it is included in, if any.
    pub block_hash: Option<[u8; 32]>,
    /// When chainsync first saw (or a backend registered) it.
    pub first_seen_at: DateTime<Utc>,
    /// The indexed tip when it was first seen.
    pub first_seen_block: Option<u64>,
    /// When it was last orphaned, if it is reorged.
    pub reorged_at: Option<DateTime<Utc>>,
    /// What the node says now (watched transactions only).
    pub observation: Observation,
}

/// Why a step was taken (stored in the history and sent in the outbox payload).
pub type Reason = String;

/// One thing to do to a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Change status. The writer applies it only if the transfer is still in `from`.
    Transition {
        /// The status the decision was made from.
        from: TransferStatus,
        /// The new status.
        to: TransferStatus,
        /// Why.
        reason: Reason,
        /// The block that caused it.
        block: Option<u64>,
        /// The block hash, when the step (re-)includes the transfer.
        block_hash: Option<[u8; 32]>,
    },
    /// Raise the stuck flag (one `transfer.stuck` event).
    MarkStuck {
        /// Why.
        reason: Reason,
    },
    /// Clear the stuck flag: the transfer made progress.
    ClearStuck,
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

fn transition(
    from: TransferStatus,
    to: TransferStatus,
    reason: impl Into<String>,
    block: Option<u64>,
    block_hash: Option<[u8; 32]>,
) -> Step {
    Step::Transition {
        from,
        to,
        reason: reason.into(),
        block,
        block_hash,
    }
}

/// `confirming → failed` for a transaction mined with status 0, naming the revert when known.
fn reverted(revert_reason: &Option<String>, block: u64) -> Step {
    let reason = match revert_reason {
        Some(text) => format!("reverted: {text}"),
        None => "reverted".to_owned(),
    };
    transition(
        TransferStatus::Confirming,
        TransferStatus::Failed,
        reason,
        Some(block),
        None,
    )
}

/// Decides what to do with one transfer now. Pure: same inputs, same steps.
///
/// Order of the rules: what the node says about a watched transaction first (inclusion, revert,
/// replacement), then confirmation depth, then the dropped timeout, then the stuck flag, which is
/// cleared as soon as any transition happens and raised only on a chain that is not stalled.
pub fn decide(
    transfer: &TransferState,
    chain: &ChainView,
    policy: &ReconcilePolicy,
    now: DateTime<Utc>,
) -> Vec<Step> {
    use TransferStatus::*;
    let mut steps = Vec::new();
    let mut status = transfer.status;
    let mut block = transfer.block;

    match (&transfer.observation, status) {
        // The receipt now names another block than the one recorded (a reorg the listener has not
        // indexed yet moved it): orphaned, then included again where the node says.
        (
            Observation::Mined {
                block: mined,
                block_hash,
                success,
                revert_reason,
            },
            Confirming,
        ) if transfer
            .block_hash
            .is_some_and(|recorded| recorded != *block_hash) =>
        {
            steps.push(transition(
                Confirming,
                Reorged,
                "moved to another block",
                Some(*mined),
                None,
            ));
            steps.push(transition(
                Reorged,
                Confirming,
                "reincluded",
                Some(*mined),
                Some(*block_hash),
            ));
            block = Some(*mined);
            if !success {
                steps.push(reverted(revert_reason, *mined));
                status = Failed;
            }
        }
        (
            Observation::Mined {
                block: mined,
                block_hash,
                success,
                revert_reason,
            },
            Pending | Reorged,
        ) => {
            let reason = if status == Pending {
                "included"
            } else {
                "reincluded"
            };
            steps.push(transition(
                status,
                Confirming,
                reason,
                Some(*mined),
                Some(*block_hash),
            ));
            status = Confirming;
            block = Some(*mined);
            if !success {
                steps.push(reverted(revert_reason, *mined));
                status = Failed;
            }
        }
        (
            Observation::Mined {
                success: false,
                revert_reason,
                block: mined,
                ..
            },
            Confirming,
        ) => {
            steps.push(reverted(revert_reason, *mined));
            status = Failed;
        }
        (Observation::NotMined { nonce_taken: true }, Pending | Reorged) => {
            steps.push(transition(
                status,
                Failed,
                "replaced",
                Some(chain.tip),
                None,
            ));
            status = Failed;
        }
        _ => {}
    }

    if status == Confirming {
        if let (Some(included), Some(confirmed)) = (block, chain.confirmed) {
            if included <= confirmed {
                let at = match policy.rule.threshold_block(included) {
                    Some(threshold) => threshold.min(chain.tip),
                    None => confirmed,
                };
                steps.push(transition(
                    Confirming,
                    Confirmed,
                    "depth reached",
                    Some(at),
                    None,
                ));
                status = Confirmed;
            }
        }
    }

    if status == Reorged {
        let since = transfer.reorged_at.unwrap_or(transfer.first_seen_at);
        if elapsed(since, now) >= policy.dropped_after {
            steps.push(transition(
                Reorged,
                Failed,
                "dropped",
                Some(chain.tip),
                None,
            ));
            status = Failed;
        }
    }

    let progressed = !steps.is_empty();
    if transfer.stuck {
        if progressed {
            steps.push(Step::ClearStuck);
        }
    } else if !status.is_terminal() && !progressed && !chain.stalled {
        let age = elapsed(transfer.first_seen_at, now);
        let blocks_behind = transfer
            .first_seen_block
            .map(|seen| chain.tip.saturating_sub(seen));
        if age >= policy.stuck_after {
            steps.push(Step::MarkStuck {
                reason: format!("{} for {}s", status, age.as_secs()),
            });
        } else if blocks_behind.is_some_and(|behind| behind >= policy.stuck_after_blocks) {
            steps.push(Step::MarkStuck {
                reason: format!(
                    "{} for {} blocks",
                    status,
                    blocks_behind.unwrap_or_default()
                ),
            });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn policy(rule: ConfirmationRule) -> ReconcilePolicy {
        ReconcilePolicy {
            rule,
            stuck_after: Duration::from_secs(60),
            stuck_after_blocks: 100,
            dropped_after: Duration::from_secs(300),
            head_stall_after: Duration::from_secs(120),
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(seconds)
    }

    fn transfer(status: TransferStatus, block: Option<u64>) -> TransferState {
        TransferState {
            status,
            stuck: false,
            block,
            block_hash: block.map(|_| [1; 32]),
            first_seen_at: t0(),
            first_seen_block: Some(10),
            reorged_at: None,
            observation: Observation::Unknown,
        }
    }

    fn chain(tip: u64, rule: ConfirmationRule, finalized: Option<u64>) -> ChainView {
        ChainView {
            tip,
            confirmed: rule.confirmed_height(tip, finalized),
            stalled: false,
        }
    }

    fn statuses(steps: &[Step]) -> Vec<TransferStatus> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Transition { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_listed_transitions_are_valid() {
        use TransferStatus::*;
        let valid = [
            (Pending, Confirming),
            (Pending, Failed),
            (Confirming, Confirmed),
            (Confirming, Failed),
            (Confirming, Reorged),
            (Reorged, Confirming),
            (Reorged, Failed),
            (Confirmed, Reorged),
        ];
        for from in TransferStatus::ALL {
            for to in TransferStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    valid.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        for status in TransferStatus::ALL {
            assert_eq!(TransferStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn depth_three_confirms_exactly_at_the_third_block() {
        let rule = ConfirmationRule::Depth(3);
        let p = policy(rule);
        let t = transfer(TransferStatus::Confirming, Some(100));
        // Depth 2 (tip 101): still confirming.
        assert!(decide(&t, &chain(101, rule, None), &p, at(1)).is_empty());
        // Depth 3 (tip 102): confirmed, recorded at block 102.
        let steps = decide(&t, &chain(102, rule, None), &p, at(1));
        assert_eq!(
            steps,
            vec![Step::Transition {
                from: TransferStatus::Confirming,
                to: TransferStatus::Confirmed,
                reason: "depth reached".into(),
                block: Some(102),
                block_hash: None,
            }]
        );
        // A catch-up that jumps far past records the threshold block, not the tip.
        let steps = decide(&t, &chain(500, rule, None), &p, at(1));
        assert!(matches!(
            steps[0],
            Step::Transition {
                block: Some(102),
                ..
            }
        ));
    }

    #[test]
    fn depth_one_confirms_in_the_including_block() {
        let rule = ConfirmationRule::Depth(1);
        assert_eq!(rule.confirmed_height(7, None), Some(7));
        assert_eq!(ConfirmationRule::Depth(3).confirmed_height(1, None), None);
        let t = transfer(TransferStatus::Confirming, Some(7));
        let steps = decide(&t, &chain(7, rule, None), &policy(rule), at(1));
        assert_eq!(statuses(&steps), vec![TransferStatus::Confirmed]);
    }

    #[test]
    fn finality_confirms_when_the_finalized_tag_passes_the_block() {
        let rule = ConfirmationRule::Finalized;
        let p = policy(rule);
        let t = transfer(TransferStatus::Confirming, Some(50));
        assert!(decide(&t, &chain(80, rule, None), &p, at(1)).is_empty());
        assert!(decide(&t, &chain(80, rule, Some(49)), &p, at(1)).is_empty());
        let steps = decide(&t, &chain(80, rule, Some(50)), &p, at(1));
        assert_eq!(statuses(&steps), vec![TransferStatus::Confirmed]);
        // The finalized tag never confirms above what is indexed.
        assert_eq!(rule.confirmed_height(40, Some(50)), Some(40));
    }

    #[test]
    fn a_mined_watched_transaction_is_included_and_a_reverted_one_fails_with_its_reason() {
        let rule = ConfirmationRule::Depth(3);
        let p = policy(rule);
        let mut t = transfer(TransferStatus::Pending, None);
        t.observation = Observation::Mined {
            block: 20,
            block_hash: [2; 32],
            success: true,
            revert_reason: None,
        };
        assert_eq!(
            statuses(&decide(&t, &chain(20, rule, None), &p, at(1))),
            vec![TransferStatus::Confirming]
        );
        // Mined and already deep enough: both steps in one pass.
        assert_eq!(
            statuses(&decide(&t, &chain(25, rule, None), &p, at(1))),
            vec![TransferStatus::Confirming, TransferStatus::Confirmed]
        );
        t.observation = Observation::Mined {
            block: 20,
            block_hash: [2; 32],
            success: false,
            revert_reason: Some("InsufficientUnlockedBalance()".into()),
        };
        let steps = decide(&t, &chain(20, rule, None), &p, at(1));
        assert_eq!(
            statuses(&steps),
            vec![TransferStatus::Confirming, TransferStatus::Failed]
        );
        assert!(
            matches!(&steps[1], Step::Transition { reason, .. } if reason == "reverted: InsufficientUnlockedBalance()")
        );
    }

    #[test]
    fn a_receipt_in_another_block_reorgs_and_reincludes_the_transfer() {
        let rule = ConfirmationRule::Depth(3);
        let mut t = transfer(TransferStatus::Confirming, Some(20));
        t.observation = Observation::Mined {
            block: 21,
            block_hash: [9; 32],
            success: true,
            revert_reason: None,
        };
        let steps = decide(&t, &chain(21, rule, None), &policy(rule), at(1));
        assert_eq!(
            statuses(&steps),
            vec![TransferStatus::Reorged, TransferStatus::Confirming]
        );
        assert!(
            matches!(&steps[1], Step::Transition { block: Some(21), block_hash: Some(h), .. } if *h == [9; 32])
        );
        // The same block as recorded: nothing to do.
        t.observation = Observation::Mined {
            block: 20,
            block_hash: [1; 32],
            success: true,
            revert_reason: None,
        };
        assert!(decide(&t, &chain(21, rule, None), &policy(rule), at(1)).is_empty());
    }

    #[test]
    fn a_taken_nonce_fails_the_transaction_as_replaced() {
        let rule = ConfirmationRule::Depth(2);
        let mut t = transfer(TransferStatus::Pending, None);
        t.observation = Observation::NotMined { nonce_taken: true };
        let steps = decide(&t, &chain(30, rule, None), &policy(rule), at(1));
        assert!(
            matches!(&steps[0], Step::Transition { to: TransferStatus::Failed, reason, .. } if reason == "replaced")
        );
        // Without a taken nonce nothing happens before stuck_after.
        t.observation = Observation::NotMined { nonce_taken: false };
        assert!(decide(&t, &chain(30, rule, None), &policy(rule), at(1)).is_empty());
    }

    #[test]
    fn stuck_after_time_or_blocks_but_not_on_a_stalled_chain() {
        let rule = ConfirmationRule::Depth(2);
        let p = policy(rule);
        let t = transfer(TransferStatus::Pending, None);
        assert!(decide(&t, &chain(11, rule, None), &p, at(59)).is_empty());
        assert!(matches!(
            decide(&t, &chain(11, rule, None), &p, at(60))[..],
            [Step::MarkStuck { .. }]
        ));
        // 100 blocks behind (first seen at 10, tip 110).
        assert!(matches!(
            decide(&t, &chain(110, rule, None), &p, at(1))[..],
            [Step::MarkStuck { .. }]
        ));
        let mut stalled = chain(11, rule, None);
        stalled.stalled = true;
        assert!(decide(&t, &stalled, &p, at(600)).is_empty());
        // Already stuck: no second event.
        let mut stuck = t.clone();
        stuck.stuck = true;
        assert!(decide(&stuck, &chain(11, rule, None), &p, at(600)).is_empty());
    }

    #[test]
    fn a_stuck_transfer_leaves_stuck_when_it_progresses() {
        let rule = ConfirmationRule::Depth(1);
        let mut t = transfer(TransferStatus::Pending, None);
        t.stuck = true;
        t.observation = Observation::Mined {
            block: 40,
            block_hash: [3; 32],
            success: true,
            revert_reason: None,
        };
        let steps = decide(&t, &chain(40, rule, None), &policy(rule), at(1000));
        assert_eq!(
            statuses(&steps),
            vec![TransferStatus::Confirming, TransferStatus::Confirmed]
        );
        assert_eq!(steps.last(), Some(&Step::ClearStuck));
    }

    #[test]
    fn reorged_and_not_reincluded_is_dropped_after_the_timeout() {
        let rule = ConfirmationRule::Depth(2);
        let p = policy(rule);
        let mut t = transfer(TransferStatus::Reorged, None);
        t.reorged_at = Some(at(100));
        t.stuck = true;
        assert!(decide(&t, &chain(20, rule, None), &p, at(399)).is_empty());
        let steps = decide(&t, &chain(20, rule, None), &p, at(400));
        assert!(
            matches!(&steps[0], Step::Transition { to: TransferStatus::Failed, reason, .. } if reason == "dropped")
        );
        // Re-included in time instead: back to confirming.
        t.observation = Observation::Mined {
            block: 19,
            block_hash: [4; 32],
            success: true,
            revert_reason: None,
        };
        assert_eq!(
            statuses(&decide(&t, &chain(19, rule, None), &p, at(200))),
            vec![TransferStatus::Confirming]
        );
    }

    #[test]
    fn head_stall_is_measured_from_the_last_head_change() {
        let p = policy(ConfirmationRule::Depth(1));
        assert!(!ChainView::is_stalled(at(0), at(119), &p));
        assert!(ChainView::is_stalled(at(0), at(120), &p));
    }
}
