//! The catalogue's deny list of bearer tokens: a JWT is refused before it expires when its
//! `jti`, its signing key's `kid`, or its subject is listed. Entries with an end (`until`)
//! lapse then and are pruned by the next denial written; the list is bounded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most denials the catalogue holds.
pub const MAX_DENIALS: usize = 10_000;

/// What a denial matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialKind {
    /// One token, by its `jti` claim.
    Jti,
    /// Every token signed with this key id.
    Kid,
    /// Every token of this subject.
    Sub,
}

impl DenialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DenialKind::Jti => "jti",
            DenialKind::Kid => "kid",
            DenialKind::Sub => "sub",
        }
    }
}

/// One entry of the deny list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenDenial {
    pub kind: DenialKind,
    pub value: String,
    /// Unix seconds after which the denial lapses (a `jti` denial needs no more than the
    /// token's `exp`); none = until removed.
    pub until: Option<u64>,
    pub reason: Option<String>,
    pub created_at: u64,
    pub created_by: String,
}

impl TokenDenial {
    /// `kind:value`, the denial's id.
    pub fn id(&self) -> String {
        denial_id(self.kind, &self.value)
    }

    pub fn in_force_at(&self, now: u64) -> bool {
        self.until.is_none_or(|u| u > now)
    }
}

pub fn denial_id(kind: DenialKind, value: &str) -> String {
    format!("{}:{value}", kind.as_str())
}

/// Add (or replace) `d`, pruning lapsed entries first; refused when the list is full.
pub fn deny(list: &mut BTreeMap<String, TokenDenial>, d: TokenDenial) -> Result<TokenDenial, String> {
    let now = d.created_at;
    list.retain(|_, x| x.in_force_at(now));
    let id = d.id();
    if !list.contains_key(&id) && list.len() >= MAX_DENIALS {
        return Err(format!("the deny list holds {MAX_DENIALS} entries; remove some or give them an end"));
    }
    list.insert(id, d.clone());
    Ok(d)
}

/// The denial in force at `now` that matches a token, if any.
pub fn denied<'a>(
    list: &'a BTreeMap<String, TokenDenial>,
    jti: Option<&str>,
    kid: Option<&str>,
    sub: &str,
    now: u64,
) -> Option<&'a TokenDenial> {
    if list.is_empty() {
        return None;
    }
    let probe =
        |kind, value: Option<&str>| value.and_then(|v| list.get(&denial_id(kind, v))).filter(|d| d.in_force_at(now));
    probe(DenialKind::Jti, jti).or_else(|| probe(DenialKind::Kid, kid)).or_else(|| probe(DenialKind::Sub, Some(sub)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: DenialKind, value: &str, until: Option<u64>, at: u64) -> TokenDenial {
        TokenDenial { kind, value: value.into(), until, reason: None, created_at: at, created_by: "root".into() }
    }

    #[test]
    fn denials_match_by_kind_and_lapse() {
        let mut list = BTreeMap::new();
        deny(&mut list, d(DenialKind::Jti, "t1", Some(100), 10)).unwrap();
        deny(&mut list, d(DenialKind::Kid, "k1", None, 10)).unwrap();
        deny(&mut list, d(DenialKind::Sub, "mallory", None, 10)).unwrap();
        assert_eq!(denied(&list, Some("t1"), None, "alice", 50).map(|d| d.id()), Some("jti:t1".into()));
        assert!(denied(&list, Some("t1"), None, "alice", 100).is_none(), "lapsed at its end");
        assert!(denied(&list, Some("t2"), Some("k1"), "alice", 50).is_some());
        assert!(denied(&list, None, Some("k2"), "mallory", 50).is_some());
        assert!(denied(&list, None, Some("k2"), "alice", 50).is_none());
        // A jti that equals a subject's name does not match the subject's denial.
        assert!(denied(&list, Some("mallory"), None, "alice", 50).is_none());
        // The next write prunes the lapsed one.
        deny(&mut list, d(DenialKind::Jti, "t3", None, 200)).unwrap();
        assert!(!list.contains_key("jti:t1"));
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn the_list_is_bounded() {
        let mut list = BTreeMap::new();
        for i in 0..MAX_DENIALS {
            deny(&mut list, d(DenialKind::Jti, &format!("t{i}"), None, 1)).unwrap();
        }
        assert!(deny(&mut list, d(DenialKind::Jti, "one-more", None, 1)).is_err());
        // Replacing an entry is not growth.
        assert!(deny(&mut list, d(DenialKind::Jti, "t0", Some(5), 1)).is_ok());
        assert_eq!(list.len(), MAX_DENIALS);
    }
}
