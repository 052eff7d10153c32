//! The live answers a Telegram retry gets again: [`Answer`], and a cache bounded in count and
//! bytes that forgets the oldest first. Imports nothing from the crate.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use protocol::Header;

/// What one remembered answer costs besides its bytes: its key, the map and queue slots.
const ANSWER_OVERHEAD: usize = 96;

/// A bot's answer as the relay got it the first time: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// The status code.
    pub(crate) status: u16,
    /// The headers, in order.
    pub(crate) headers: Vec<Header>,
    /// The body.
    pub(crate) body: Bytes,
}

impl Answer {
    /// The bytes this answer keeps alive, for the memory bound.
    fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        self.body.len() + headers + ANSWER_OVERHEAD
    }
}

/// Recent live answers, forgotten oldest first past either bound.
#[derive(Debug)]
pub(super) struct AnswerCache {
    answers: HashMap<(String, i64), Answer>,
    order: VecDeque<((String, i64), usize)>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl AnswerCache {
    pub(super) fn new(max_count: usize, max_bytes: usize) -> AnswerCache {
        AnswerCache {
            answers: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    pub(super) fn get(&self, bot: &str, id: i64) -> Option<&Answer> {
        self.answers.get(&(bot.to_owned(), id))
    }

    /// Removes and returns an answer; its bytes are released when its turn to be evicted comes.
    pub(super) fn take(&mut self, bot: &str, id: i64) -> Option<Answer> {
        self.answers.remove(&(bot.to_owned(), id))
    }

    /// Remembers the first answer to each update; one larger than the whole bound is not kept.
    pub(super) fn insert(&mut self, bot: &str, id: i64, answer: Answer) {
        let key = (bot.to_owned(), id);
        let size = answer.size() + bot.len();
        if self.max_count == 0 || size > self.max_bytes || self.answers.contains_key(&key) {
            return;
        }
        while self.order.len() >= self.max_count || self.bytes + size > self.max_bytes {
            let Some((oldest, oldest_size)) = self.order.pop_front() else {
                break;
            };
            self.answers.remove(&oldest);
            self.bytes -= oldest_size;
        }
        self.order.push_back((key.clone(), size));
        self.answers.insert(key, answer);
        self.bytes += size;
    }
}
