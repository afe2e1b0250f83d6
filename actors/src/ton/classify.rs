//! What a decoded transaction means for the account that was watched: the pure rules of
//! `../reference/ton.md`'s safe payment detection, with no I/O.
//!
//! - A transaction *delivered* its inbound message when it was not aborted and its compute
//!   (exit code 0 or 1) and action phases succeeded, or when it was aborted only because the
//!   account has no code and the message was non-bounceable (compute skipped, value kept).
//!   Aborted with a bounce message sent back → *bounced*; any other failure → *failed* with the
//!   exit code.
//! - `deposit` accounts: an internal inbound message with a source, not itself a bounce, with a
//!   value → a TON deposit (comment and memo match recorded).
//! - `hot_wallet` accounts: every internal outbound message → an edge to follow; an inbound
//!   bounced message → the bounce coming back; an external inbound message → its TEP-467
//!   normalised hash, matched against registered transfers.
//! - jetton wallets of watched owners: an inbound `internal_transfer` that the wallet accepted →
//!   a jetton deposit (a `transfer_notification` to the owner, when present, is recorded as
//!   confirmation only).

use super::decode::{
    BouncePhase, ComputePhase, JettonBody, MessageKind, SkipReason, TonAccount, TonTransaction,
};

/// How a transaction treated its inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The value reached the account (including a non-bounceable transfer to an uninitialised
    /// account, which is aborted but keeps the value).
    Delivered,
    /// Aborted and bounced: the value (minus fees) went back to the sender.
    Bounced,
    /// Failed without a bounce; the exit code of the compute phase, or of the action phase.
    Failed(i32),
}

impl Delivery {
    /// The reason recorded on a failed transfer.
    pub fn failure_reason(self) -> Option<String> {
        match self {
            Self::Delivered => None,
            Self::Bounced => Some("bounced".to_owned()),
            Self::Failed(code) => Some(format!("exit code {code}")),
        }
    }
}

/// Decides how `tx` treated its inbound message.
pub fn delivery(tx: &TonTransaction) -> Delivery {
    let compute = tx.compute();
    if !tx.aborted() {
        if let Some(ComputePhase::Vm {
            success: false,
            exit_code,
            ..
        }) = compute
        {
            return Delivery::Failed(*exit_code);
        }
        if let Some(action) = tx.description.action() {
            if !action.success {
                return Delivery::Failed(action.result_code);
            }
        }
        return Delivery::Delivered;
    }
    if let Some(BouncePhase::Ok { .. }) = tx.description.bounce() {
        return Delivery::Bounced;
    }
    match compute {
        // No code and nothing to bounce with: a non-bounceable transfer to an uninitialised
        // account. The value stays there.
        Some(ComputePhase::Skipped {
            reason: SkipReason::NoState,
        }) if tx.in_msg.as_ref().is_some_and(|m| !m.bounce) => Delivery::Delivered,
        Some(ComputePhase::Vm { exit_code, .. }) => Delivery::Failed(*exit_code),
        Some(ComputePhase::Skipped { .. }) | None => Delivery::Failed(-1),
    }
}

/// A TON payment to a `deposit` account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TonDeposit {
    /// The paying account (raw `wc:hex`).
    pub sender: String,
    /// Nanotons carried by the message.
    pub amount: u128,
    /// Text comment, when the body is one.
    pub comment: Option<String>,
    /// Whether the configured memo prefix matched (`None` without a memo).
    pub memo_matched: Option<bool>,
    /// What the account did with it.
    pub delivery: Delivery,
}

/// Reads a TON deposit from a `deposit` account's transaction.
pub fn ton_deposit(tx: &TonTransaction, memo: Option<&str>) -> Option<TonDeposit> {
    let msg = tx.in_msg.as_ref()?;
    if msg.kind != MessageKind::Internal || msg.bounced || msg.value == 0 {
        return None;
    }
    let sender = msg.src.as_ref()?.to_string();
    let memo_matched = memo.map(|prefix| {
        msg.comment
            .as_deref()
            .is_some_and(|c| c.starts_with(prefix))
    });
    Some(TonDeposit {
        sender,
        amount: msg.value,
        comment: msg.comment.clone(),
        memo_matched,
        delivery: delivery(tx),
    })
}

/// A jetton payment credited on a watched owner's jetton wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JettonDeposit {
    /// The previous owner of the jettons (`from` of `internal_transfer`).
    pub sender: Option<String>,
    /// Jetton base units.
    pub amount: u128,
    /// TON forwarded to the owner with the notification.
    pub forward_ton_amount: u128,
    /// Whether the wallet notified the owner (only when TON was forwarded).
    pub notified: bool,
    /// The notification's forward-payload comment, when present.
    pub comment: Option<String>,
    /// Whether the wallet accepted it.
    pub delivery: Delivery,
}

/// Reads a jetton deposit from a jetton wallet's transaction.
pub fn jetton_deposit(tx: &TonTransaction, owner: &TonAccount) -> Option<JettonDeposit> {
    let msg = tx.in_msg.as_ref()?;
    if msg.kind != MessageKind::Internal || msg.bounced {
        return None;
    }
    let Some(JettonBody::InternalTransfer {
        amount,
        from,
        forward_ton_amount,
        ..
    }) = &msg.jetton
    else {
        return None;
    };
    let notification = tx.out_msgs.iter().find_map(|out| {
        let to_owner = out.dest.as_ref().and_then(|d| d.account()) == Some(*owner);
        match &out.jetton {
            Some(JettonBody::TransferNotification { comment, .. }) if to_owner => {
                Some(comment.clone())
            }
            _ => None,
        }
    });
    Some(JettonDeposit {
        sender: from.as_ref().map(ToString::to_string),
        amount: *amount,
        forward_ton_amount: *forward_ton_amount,
        notified: notification.is_some(),
        comment: notification.flatten(),
        delivery: delivery(tx),
    })
}

/// One outgoing internal message of a hot wallet: an edge until the destination consumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEdge {
    /// Hash of the message cell.
    pub msg_hash: [u8; 32],
    /// The destination account.
    pub destination: TonAccount,
    /// Nanotons sent.
    pub value: u128,
    /// Whether the message bounces on failure.
    pub bounce: bool,
    /// Text comment, when the body is one.
    pub comment: Option<String>,
    /// Logical time of the message's creation: the destination's transaction is later.
    pub created_lt: u64,
}

/// What a hot wallet's transaction means.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HotWalletTx {
    /// Messages sent.
    pub edges: Vec<OutgoingEdge>,
    /// Hash of a bounced message coming back (the third transaction of a bounce).
    pub bounce_back: Option<[u8; 32]>,
    /// TEP-467 hash of the external message that started it.
    pub external_hash: Option<[u8; 32]>,
    /// Whether the wallet's own run succeeded (its messages were sent).
    pub delivery: Option<Delivery>,
}

/// Reads a hot wallet's transaction.
pub fn hot_wallet_tx(tx: &TonTransaction) -> HotWalletTx {
    let mut out = HotWalletTx::default();
    if let Some(msg) = &tx.in_msg {
        if msg.kind == MessageKind::Internal && msg.bounced {
            out.bounce_back = Some(msg.hash);
        }
        if msg.kind == MessageKind::ExternalIn {
            out.external_hash = Some(msg.normalized_hash.unwrap_or(msg.hash));
            out.delivery = Some(delivery(tx));
        }
    }
    out.edges = tx
        .out_msgs
        .iter()
        .filter(|m| m.kind == MessageKind::Internal)
        .filter_map(|m| {
            Some(OutgoingEdge {
                msg_hash: m.hash,
                destination: m.dest.as_ref()?.account()?,
                value: m.value,
                bounce: m.bounce,
                comment: m.comment.clone(),
                created_lt: m.created_lt,
            })
        })
        .collect();
    out
}

/// The message a bounce sends back, from the destination's transaction that bounced.
pub fn bounced_message(tx: &TonTransaction) -> Option<[u8; 32]> {
    tx.out_msgs
        .iter()
        .find(|m| m.kind == MessageKind::Internal && m.bounced)
        .map(|m| m.hash)
}
