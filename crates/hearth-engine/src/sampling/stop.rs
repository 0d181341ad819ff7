//! Stop strings matched across token boundaries, without ever emitting part of a stop string.

/// What [`StopMatcher::push`] allows the caller to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopScan {
    /// Text safe to emit now (possibly empty while a potential stop string is held back).
    Emit(String),
    /// A stop string matched: emit `text` (everything before it), then end the sequence.
    Stop { text: String, stop_index: usize },
}

/// Watches a stream of decoded text for the first occurrence of any stop string.
///
/// Text that could still turn out to be the start of a stop string is held back until the next
/// increment decides it. Once stopped, further input is ignored.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored: they would stop before any text (validation rejects them).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// True once a stop string has matched.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Feeds the next decoded increment.
    pub fn push(&mut self, text: &str) -> StopScan {
        if self.stopped {
            return StopScan::Emit(String::new());
        }
        self.held.push_str(text);
        // Everything emitted earlier was checked not to begin any stop string, so the earliest
        // match lies entirely in `held`.
        if let Some((position, stop_index)) = self.first_match() {
            // A longer stop string starting earlier may still complete ("a 日" vs " "): the first
            // occurrence in the text wins, so wait for it to be decided.
            if let Some(start) = self.partial_start_before(position) {
                let rest = self.held.split_off(start);
                return StopScan::Emit(std::mem::replace(&mut self.held, rest));
            }
            self.held.truncate(position);
            self.stopped = true;
            return StopScan::Stop {
                text: std::mem::take(&mut self.held),
                stop_index,
            };
        }
        let keep = self.longest_partial_suffix();
        let rest = self.held.split_off(self.held.len() - keep);
        StopScan::Emit(std::mem::replace(&mut self.held, rest))
    }

    /// Ends the stream: the held text, cut at the first stop string it contains (then reported as a stop).
    pub fn finish(&mut self) -> StopScan {
        if self.stopped {
            return StopScan::Emit(String::new());
        }
        if let Some((position, stop_index)) = self.first_match() {
            self.held.truncate(position);
            self.stopped = true;
            return StopScan::Stop { text: std::mem::take(&mut self.held), stop_index };
        }
        StopScan::Emit(std::mem::take(&mut self.held))
    }

    /// The first char boundary before `end` from which `held` is an unfinished prefix of a stop string.
    fn partial_start_before(&self, end: usize) -> Option<usize> {
        (0..end).filter(|&q| self.held.is_char_boundary(q)).find(|&q| {
            let tail = &self.held[q..];
            self.stops.iter().any(|stop| stop.len() > tail.len() && stop.starts_with(tail))
        })
    }

    /// Byte position and index of the earliest stop string in `held` (first listed on a tie).
    fn first_match(&self) -> Option<(usize, usize)> {
        self.stops
            .iter()
            .enumerate()
            .filter_map(|(index, stop)| self.held.find(stop.as_str()).map(|pos| (pos, index)))
            .min()
    }

    /// Length in bytes of the longest suffix of `held` that is a proper prefix of a stop string.
    fn longest_partial_suffix(&self) -> usize {
        let held = self.held.as_bytes();
        let longest_possible = self.stops.iter().map(|s| s.len() - 1).max().unwrap_or(0);
        (1..=longest_possible.min(held.len()))
            .rev()
            .find(|&len| {
                let suffix = &held[held.len() - len..];
                // A suffix equal to a stop's prefix starts at a char boundary anyway (stops
                // start at one); checking keeps `split_off` in `push` panic-free regardless.
                self.held.is_char_boundary(held.len() - len)
                    && self
                        .stops
                        .iter()
                        .any(|stop| stop.as_bytes().starts_with(suffix))
            })
            .unwrap_or(0)
    }
}
