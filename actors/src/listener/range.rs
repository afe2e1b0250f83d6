//! Adaptive `eth_getLogs` block ranges.
//!
//! Providers refuse ranges that are too wide or answers that are too big, each in its own words.
//! When the refusal names a usable range ("try with this block range [0x1, 0x3e8]", "limited to
//! 1000 blocks", "up to a 2K block range") that range is used; when it only says the answer was
//! too large, the range is halved. After a run of successes the range grows back, never past the
//! configured maximum.

/// How many consecutive successes before the range doubles again.
const SUCCESSES_BEFORE_GROWTH: u32 = 3;
/// Logs one batch should hold at most. A batch's memory (the JSON answer, the decoded logs, the
/// insert) grows with its logs, so dense blocks shrink the span: memory stays bounded by this,
/// not by how busy the chain is.
pub const TARGET_LOGS_PER_BATCH: usize = 2_000;
/// The first span is the maximum divided by this.
const INITIAL_SPAN_DIVISOR: u64 = 16;

/// What a provider's error says about the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAdvice {
    /// The provider named a span it accepts.
    UseSpan(u64),
    /// The answer was too large or the range too wide, without a usable number: halve.
    Halve,
    /// The error is not about the range.
    NotARangeError,
}

/// Reads a provider error message for range advice. `requested` is the span that was refused.
pub fn advise(message: &str, requested: u64) -> RangeAdvice {
    let lower = message.to_ascii_lowercase();
    // "[0x1, 0x3e8]" or "[1, 1000]": the provider's suggested inclusive range.
    if let Some(span) = bracketed_range(&lower) {
        if span >= 1 && span < requested {
            return RangeAdvice::UseSpan(span);
        }
    }
    let range_words = [
        "block range",
        "range is too",
        "range too",
        "blocks range",
        "limited to",
        "max range",
        "maximum block range",
        "exceed",
        "too many",
        "too big",
        "too large",
        "more than",
        "response size",
        "query timeout",
        "limit",
    ];
    if !range_words.iter().any(|w| lower.contains(w)) {
        return RangeAdvice::NotARangeError;
    }
    // "limited to 1000 blocks", "maximum block range: 5000", "up to a 2k block range". A count of
    // results or logs ("more than 10000 results") is not a span: only numbers next to "block".
    if lower.contains("block") {
        if let Some(span) = number_near_block_word(&lower) {
            if span >= 1 && span < requested {
                return RangeAdvice::UseSpan(span);
            }
        }
    }
    RangeAdvice::Halve
}

fn parse_number(token: &str) -> Option<u64> {
    let token = token.trim().trim_matches(|c: char| c == ',' || c == '.');
    if let Some(hex) = token.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok();
    }
    let digits: String = token.chars().filter(|c| *c != ',' && *c != '_').collect();
    if let Some(thousands) = digits.strip_suffix('k') {
        return thousands.parse::<u64>().ok().map(|n| n * 1000);
    }
    digits.parse().ok()
}

fn bracketed_range(text: &str) -> Option<u64> {
    let open = text.find('[')?;
    let close = open + text[open..].find(']')?;
    let inner = &text[open + 1..close];
    let mut parts = inner.split(',');
    let from = parse_number(parts.next()?)?;
    let to = parse_number(parts.next()?)?;
    (to >= from).then(|| to - from + 1)
}

fn number_near_block_word(text: &str) -> Option<u64> {
    let tokens: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')')
        .filter(|t| !t.is_empty())
        .collect();
    for (i, token) in tokens.iter().enumerate() {
        if let Some(n) = parse_number(token) {
            let window = tokens
                .iter()
                .skip(i.saturating_sub(3))
                .take(7)
                .any(|t| t.starts_with("block") || t.starts_with("range"));
            if window {
                return Some(n);
            }
        }
    }
    None
}

/// The adaptive span of one listener.
#[derive(Debug, Clone)]
pub struct BlockRange {
    current: u64,
    max: u64,
    successes: u32,
}

impl BlockRange {
    /// Starts at a sixteenth of the configured maximum (at least 1) and grows from there: the
    /// first answer of a dense chain then stays small, and a sparse chain reaches the maximum
    /// after about fifteen ranges.
    pub fn new(max: u64) -> Self {
        let max = max.max(1);
        Self {
            current: (max / INITIAL_SPAN_DIVISOR).max(1),
            max,
            successes: 0,
        }
    }

    /// The span to request next.
    pub fn span(&self) -> u64 {
        self.current
    }

    /// Records a success that returned `logs` logs: a batch over [`TARGET_LOGS_PER_BATCH`]
    /// shrinks the span in proportion (returns true then); otherwise, after a few successes in a
    /// row, the span doubles, up to the maximum.
    pub fn succeeded(&mut self, logs: usize) -> bool {
        if logs > TARGET_LOGS_PER_BATCH {
            let scaled = self.current as u128 * TARGET_LOGS_PER_BATCH as u128 / logs as u128;
            self.current = u64::try_from(scaled).unwrap_or(1).max(1);
            self.successes = 0;
            return true;
        }
        self.successes += 1;
        if self.successes >= SUCCESSES_BEFORE_GROWTH && self.current < self.max {
            self.current = (self.current * 2).min(self.max);
            self.successes = 0;
        }
        false
    }

    /// Applies a provider's refusal of `requested` blocks. Returns the reason label for the
    /// reduction metric, or `None` when the error is not about the range.
    pub fn refused(&mut self, advice: RangeAdvice, requested: u64) -> Option<&'static str> {
        self.successes = 0;
        match advice {
            RangeAdvice::UseSpan(span) => {
                self.current = span.clamp(1, self.max);
                Some("provider_hint")
            }
            RangeAdvice::Halve => {
                self.current = (requested / 2).max(1);
                Some("halved")
            }
            RangeAdvice::NotARangeError => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_suggested_range_is_used() {
        let infura =
            "query returned more than 10000 results. Try with this block range [0x1, 0x3E8].";
        assert_eq!(advise(infura, 5000), RangeAdvice::UseSpan(1000));
        let alchemy = "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on the response size, or you can receive unlimited logs in a 10K block range. Based on your parameters, this block range should work: [0x10, 0x1f3]";
        assert_eq!(advise(alchemy, 10_000), RangeAdvice::UseSpan(484));
    }

    #[test]
    fn stated_block_limits_are_used() {
        assert_eq!(
            advise("eth_getLogs is limited to 1000 blocks", 5000),
            RangeAdvice::UseSpan(1000)
        );
        assert_eq!(
            advise("exceed maximum block range: 500", 2000),
            RangeAdvice::UseSpan(500)
        );
        assert_eq!(
            advise("eth_getLogs is limited to a 10,000 block range", 50_000),
            RangeAdvice::UseSpan(10_000)
        );
    }

    #[test]
    fn size_errors_without_numbers_halve() {
        assert_eq!(advise("response is too big", 2000), RangeAdvice::Halve);
        assert_eq!(
            advise("query returned more than 10000 results", 2000),
            RangeAdvice::Halve
        );
        assert_eq!(advise("Response size exceeded", 2000), RangeAdvice::Halve);
    }

    #[test]
    fn other_errors_are_not_range_errors() {
        assert_eq!(
            advise("header not found", 2000),
            RangeAdvice::NotARangeError
        );
        assert_eq!(advise("internal error", 2000), RangeAdvice::NotARangeError);
    }

    #[test]
    fn a_suggestion_no_smaller_than_requested_halves_instead() {
        assert_eq!(
            advise("Try with this block range [0x1, 0x3E8].", 100),
            RangeAdvice::Halve
        );
    }

    #[test]
    fn dense_batches_shrink_the_span_to_the_log_target() {
        let mut range = BlockRange::new(1000);
        for _ in 0..15 {
            range.succeeded(10);
        }
        assert_eq!(range.span(), 1000, "grown to the maximum");
        assert!(range.succeeded(TARGET_LOGS_PER_BATCH * 4));
        assert_eq!(range.span(), 250);
        assert!(range.succeeded(usize::MAX));
        assert_eq!(range.span(), 1, "never below one block");
        assert!(!range.succeeded(TARGET_LOGS_PER_BATCH));
    }

    #[test]
    fn range_shrinks_then_grows_back_to_the_maximum_only() {
        let mut range = BlockRange::new(1000);
        assert_eq!(range.span(), 62, "starts small");
        assert_eq!(range.refused(RangeAdvice::Halve, 1000), Some("halved"));
        assert_eq!(range.span(), 500);
        assert_eq!(
            range.refused(RangeAdvice::UseSpan(100), 500),
            Some("provider_hint")
        );
        assert_eq!(range.span(), 100);
        for _ in 0..30 {
            range.succeeded(10);
        }
        assert_eq!(range.span(), 1000);
        assert_eq!(range.refused(RangeAdvice::NotARangeError, 1000), None);
        assert_eq!(range.refused(RangeAdvice::Halve, 1), Some("halved"));
        assert_eq!(range.span(), 1);
    }
}
