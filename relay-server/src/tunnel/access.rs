//! Who may connect as an agent: the tokens the relay accepts and the bots each may serve.

use std::collections::BTreeSet;

use protocol::Secret;

use crate::config::AgentGrant;

/// The tokens the relay accepts.
#[derive(Debug)]
pub(crate) struct Access {
    any_bot: Option<Secret>,
    grants: Vec<(String, Secret, BTreeSet<String>)>,
}

/// What an authenticated agent may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    /// The grant's name, for logs ("any-bot token" for the single token).
    pub(crate) name: String,
    /// The bots it may serve; `None` for any.
    pub(crate) bots: Option<BTreeSet<String>>,
    /// Which token it is, for counting its sessions: 0 for the any-bot token, then the
    /// `[[agents]]` in their order from 1.
    pub(crate) token: usize,
}

impl Grant {
    /// Whether this grant covers `bot`.
    pub(crate) fn allows(&self, bot: &str) -> bool {
        self.bots.as_ref().is_none_or(|bots| bots.contains(bot))
    }
}

impl Access {
    /// The configured `grants`, and `any_bot`, the resolved single token, if one is in use.
    pub(crate) fn new(grants: &[AgentGrant], any_bot: Option<Secret>) -> Self {
        Self {
            any_bot,
            grants: grants
                .iter()
                .map(|agent| {
                    let bots = agent.bots.iter().cloned().collect();
                    (agent.name.clone(), agent.token.clone(), bots)
                })
                .collect(),
        }
    }

    /// The grant that `presented` unlocks. Every token is compared, in constant time, so the
    /// answer's timing says nothing about which one came close.
    pub(crate) fn authenticate(&self, presented: &[u8]) -> Option<Grant> {
        let mut found = None;
        if let Some(token) = &self.any_bot
            && token.matches(presented)
        {
            found = Some(Grant {
                name: "any-bot token".into(),
                bots: None,
                token: 0,
            });
        }
        for (index, (name, token, bots)) in self.grants.iter().enumerate() {
            if token.matches(presented) && found.is_none() {
                found = Some(Grant {
                    name: name.clone(),
                    bots: Some(bots.clone()),
                    token: index + 1,
                });
            }
        }
        found
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
