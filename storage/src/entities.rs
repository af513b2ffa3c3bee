//! Entity extraction without a model or a network call: a deterministic, rule-based tagger for
//! people, organisations, places, dates, emails, URLs and amounts (IO-free, microseconds per
//! memory), and the per-namespace index of which memories mention which entity.
//!
//! Patterns (emails, URLs, amounts, dates) are recognised by their shape; names by capitalised
//! word runs classified with small gazetteers, organisation suffixes, titles and the word before
//! them ("in Berlin", "at Siemens", "Dr. Lee"). Its precision and recall on the labelled set in
//! `tests/fixtures/entities.json` are measured by the unit test below and reported in
//! `docs/recall.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// The entity types this extractor knows (the wire names; `org` and `location` as Dakera).
pub const TYPES: [&str; 7] = ["person", "org", "location", "date", "email", "url", "amount"];

/// The types extracted when a namespace names none.
pub fn default_types() -> Vec<String> {
    TYPES.iter().map(|t| t.to_string()).collect()
}

/// A type name as a request may give it (`organization`, `place`, `money`, …), as the wire name.
pub fn canonical_type(t: &str) -> Option<&'static str> {
    Some(match t.trim().to_ascii_lowercase().as_str() {
        "person" | "people" | "per" | "name" => "person",
        "org" | "organization" | "organisation" | "company" => "org",
        "location" | "loc" | "place" | "gpe" | "city" | "country" => "location",
        "date" | "time" | "datetime" => "date",
        "email" | "e-mail" => "email",
        "url" | "link" => "url",
        "amount" | "money" | "currency" | "price" => "amount",
        _ => return None,
    })
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entity {
    /// One of [`TYPES`].
    pub entity_type: String,
    /// The text as written.
    pub value: String,
    /// Byte offsets into the text.
    pub start: usize,
    pub end: usize,
    /// How sure the rule that found it is (shape rules 0.95, gazetteers 0.9, context 0.7).
    pub confidence: f32,
}

impl Entity {
    /// What two mentions of one entity share: type and lower-cased value.
    pub fn key(&self) -> String {
        format!("{}:{}", self.entity_type, self.value.to_lowercase())
    }
}

const MONTHS: [&str; 21] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
];
const MONTHS_SHORT: [&str; 3] = ["oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const RELATIVE_DAYS: [&str; 3] = ["today", "yesterday", "tomorrow"];

const ORG_SUFFIXES: [&str; 22] = [
    "inc",
    "inc.",
    "corp",
    "corp.",
    "corporation",
    "ltd",
    "ltd.",
    "llc",
    "gmbh",
    "ag",
    "plc",
    "co.",
    "company",
    "group",
    "labs",
    "university",
    "bank",
    "institute",
    "foundation",
    "systems",
    "technologies",
    "airlines",
];

const ORGS: [&str; 48] = [
    "openai",
    "google",
    "microsoft",
    "apple",
    "amazon",
    "meta",
    "facebook",
    "siemens",
    "ibm",
    "intel",
    "nvidia",
    "tesla",
    "netflix",
    "spotify",
    "uber",
    "airbnb",
    "oracle",
    "sap",
    "samsung",
    "sony",
    "toyota",
    "volkswagen",
    "bmw",
    "mercedes",
    "bosch",
    "anthropic",
    "deepmind",
    "github",
    "gitlab",
    "mozilla",
    "nasa",
    "un",
    "who",
    "nato",
    "unicef",
    "stripe",
    "shopify",
    "salesforce",
    "adobe",
    "twitter",
    "linkedin",
    "reddit",
    "slack",
    "zoom",
    "paypal",
    "visa",
    "mastercard",
    "acme",
];

const PLACES: [&str; 80] = [
    "berlin",
    "munich",
    "hamburg",
    "bremen",
    "frankfurt",
    "cologne",
    "vienna",
    "zurich",
    "geneva",
    "paris",
    "lyon",
    "london",
    "manchester",
    "edinburgh",
    "dublin",
    "madrid",
    "barcelona",
    "lisbon",
    "rome",
    "milan",
    "amsterdam",
    "brussels",
    "copenhagen",
    "stockholm",
    "oslo",
    "helsinki",
    "warsaw",
    "prague",
    "budapest",
    "athens",
    "istanbul",
    "moscow",
    "kyiv",
    "cairo",
    "lagos",
    "nairobi",
    "tokyo",
    "osaka",
    "seoul",
    "beijing",
    "shanghai",
    "singapore",
    "sydney",
    "melbourne",
    "toronto",
    "vancouver",
    "montreal",
    "chicago",
    "boston",
    "seattle",
    "austin",
    "denver",
    "miami",
    "atlanta",
    "york",
    "san",
    "los",
    "germany",
    "france",
    "spain",
    "italy",
    "portugal",
    "england",
    "scotland",
    "ireland",
    "austria",
    "switzerland",
    "netherlands",
    "belgium",
    "sweden",
    "norway",
    "poland",
    "japan",
    "china",
    "india",
    "brazil",
    "canada",
    "mexico",
    "australia",
    "europe",
];

const FIRST_NAMES: [&str; 88] = [
    "anna",
    "alice",
    "bob",
    "carol",
    "dave",
    "david",
    "eve",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "oscar",
    "peggy",
    "trent",
    "victor",
    "walter",
    "john",
    "jane",
    "mary",
    "james",
    "robert",
    "michael",
    "william",
    "linda",
    "elizabeth",
    "barbara",
    "susan",
    "jessica",
    "sarah",
    "karen",
    "thomas",
    "charles",
    "daniel",
    "matthew",
    "anthony",
    "mark",
    "paul",
    "steven",
    "andrew",
    "joshua",
    "kevin",
    "brian",
    "george",
    "emily",
    "emma",
    "olivia",
    "sophia",
    "mia",
    "lucas",
    "noah",
    "liam",
    "ethan",
    "maria",
    "laura",
    "julia",
    "lena",
    "max",
    "felix",
    "jonas",
    "leon",
    "paula",
    "hans",
    "klaus",
    "petra",
    "sabine",
    "pierre",
    "marie",
    "sophie",
    "luca",
    "giulia",
    "carlos",
    "sofia",
    "diego",
    "ana",
    "yuki",
    "hiro",
    "wei",
    "li",
    "priya",
    "raj",
    "amir",
    "fatima",
    "omar",
    "tom",
    "sam",
    "alex",
];

const TITLES: [&str; 10] = ["mr", "mr.", "mrs", "mrs.", "ms", "ms.", "dr", "dr.", "prof", "prof."];
/// Capitalised words that are not names (sentence starts, pronouns, common words).
const STOP: [&str; 40] = [
    "the", "a", "an", "i", "we", "you", "he", "she", "it", "they", "this", "that", "these", "those", "my", "our",
    "your", "his", "her", "their", "in", "on", "at", "of", "and", "or", "but", "if", "when", "then", "user", "users",
    "please", "remember", "note", "also", "after", "before", "during", "meeting",
];

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\'' || c == '-' || c == '&'
}

/// Tokens with their byte spans (words, numbers and single punctuation characters).
fn tokens(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        let rest = &text[i + c.len_utf8()..];
        let next_alnum = rest.starts_with(|n: char| n.is_alphanumeric());
        let next_digit = rest.starts_with(|n: char| n.is_ascii_digit());
        let prev_digit = text[..i].ends_with(|p: char| p.is_ascii_digit());
        let joins = start.is_some() && ((c == '.' && next_alnum) || (c == ',' && prev_digit && next_digit));
        if is_word_char(c) || joins {
            if start.is_none() {
                start = Some(i);
            }
        } else {
            if let Some(s) = start.take() {
                out.push((s, i));
            }
            if !c.is_whitespace() {
                out.push((i, i + c.len_utf8()));
            }
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

fn shape_entities(text: &str, out: &mut Vec<Entity>) {
    // Emails and URLs: whitespace-separated words of their shape, trailing punctuation dropped.
    let mut pos = 0;
    for word in text.split_whitespace() {
        let Some(at) = text[pos..].find(word).map(|i| i + pos) else { continue };
        pos = at + word.len();
        let trimmed = word.trim_end_matches(['.', ',', ';', ':', ')', '!', '?', '"', '\'']);
        let trimmed = trimmed.trim_start_matches(['(', '"', '\'', '<']);
        let lead = word.find(trimmed).unwrap_or(0);
        let (s, e) = (at + lead, at + lead + trimmed.len());
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("www.") {
            if trimmed.len() > 8 {
                out.push(ent("url", text, s, e, 0.95));
            }
        } else if let Some((local, domain)) = trimmed.split_once('@') {
            let ok_local = !local.is_empty() && local.chars().all(|c| c.is_alphanumeric() || "._%+-".contains(c));
            let ok_domain = domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain.chars().all(|c| c.is_alphanumeric() || ".-".contains(c));
            if ok_local && ok_domain {
                out.push(ent("email", text, s, e, 0.95));
            }
        }
    }
}

fn ent(t: &str, text: &str, s: usize, e: usize, confidence: f32) -> Entity {
    Entity { entity_type: t.into(), value: text[s..e].to_string(), start: s, end: e, confidence }
}

fn is_number(w: &str) -> bool {
    let w = w.trim_end_matches(['k', 'K', 'm', 'M', 'b', 'B']);
    !w.is_empty()
        && w.chars().next().is_some_and(|c| c.is_ascii_digit())
        && w.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ',')
}

fn is_month(w: &str) -> bool {
    let l = w.trim_end_matches('.').to_ascii_lowercase();
    MONTHS.contains(&l.as_str()) || MONTHS_SHORT.contains(&l.as_str())
}

fn is_year(w: &str) -> bool {
    w.len() == 4 && w.chars().all(|c| c.is_ascii_digit()) && (w.starts_with("19") || w.starts_with("20"))
}

fn is_day(w: &str) -> bool {
    let d = w.trim_end_matches("st").trim_end_matches("nd").trim_end_matches("rd").trim_end_matches("th");
    !d.is_empty()
        && d.len() <= 2
        && d.chars().all(|c| c.is_ascii_digit())
        && d.parse::<u32>().is_ok_and(|n| (1..=31).contains(&n))
}

fn iso_date(w: &str) -> bool {
    let parts: Vec<&str> = w.split(['-', '/']).collect();
    parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && (parts[0].len() == 4 || parts[2].len() == 4)
}

const CURRENCY_WORDS: [&str; 12] =
    ["usd", "eur", "gbp", "jpy", "chf", "dollars", "dollar", "euros", "euro", "pounds", "yen", "francs"];

fn capitalised(w: &str) -> bool {
    let mut cs = w.chars();
    cs.next().is_some_and(|c| c.is_uppercase()) && w.chars().any(|c| c.is_alphabetic())
}

/// Extract entities of `types` (wire names; empty = all) from `text`, in text order, no span
/// reported twice.
pub fn extract(text: &str, types: &[String]) -> Vec<Entity> {
    let wanted = |t: &str| types.is_empty() || types.iter().any(|x| canonical_type(x) == Some(t));
    let mut found = Vec::new();
    shape_entities(text, &mut found);
    let toks = tokens(text);
    let word = |i: usize| -> &str { toks.get(i).map(|(s, e)| &text[*s..*e]).unwrap_or("") };
    // Spans of the shape entities, in order: a token inside one is skipped (the entities found
    // below start after the tokens already consumed, so they never overlap each other).
    let mut shapes: Vec<(usize, usize)> = found.iter().map(|f| (f.start, f.end)).collect();
    shapes.sort_unstable();
    let mut next_shape = 0;
    let mut i = 0;
    while i < toks.len() {
        let w = word(i);
        let (s, e) = toks[i];
        while next_shape < shapes.len() && shapes[next_shape].1 <= s {
            next_shape += 1;
        }
        if shapes.get(next_shape).is_some_and(|sh| sh.0 < e) {
            i += 1;
            continue;
        }
        // Amounts: a currency sign then a number, or a number then a currency word.
        if matches!(w, "$" | "€" | "£" | "¥") && is_number(word(i + 1)) {
            found.push(ent("amount", text, s, toks[i + 1].1, 0.95));
            i += 2;
            continue;
        }
        if is_number(w) && CURRENCY_WORDS.contains(&word(i + 1).to_ascii_lowercase().as_str()) {
            found.push(ent("amount", text, s, toks[i + 1].1, 0.95));
            i += 2;
            continue;
        }
        // Dates: ISO or slashed, "March 5, 2024", "5 March 2024", "March 2024", weekdays.
        if iso_date(w) {
            found.push(ent("date", text, s, toks[i].1, 0.95));
            i += 1;
            continue;
        }
        if is_month(w) && (capitalised(w) || w.len() > 3) {
            let mut end = i;
            if is_day(word(i + 1)) {
                end = i + 1;
                if word(i + 2) == "," && is_year(word(i + 3)) {
                    end = i + 3;
                } else if is_year(word(i + 2)) {
                    end = i + 2;
                }
            } else if is_year(word(i + 1)) {
                end = i + 1;
            }
            // A bare month name counts only when capitalised and not "May" the verb.
            if end > i || (capitalised(w) && w != "May") {
                found.push(ent("date", text, s, toks[end].1, 0.9));
                i = end + 1;
                continue;
            }
        }
        if is_day(w) && is_month(word(i + 1)) {
            let end = if is_year(word(i + 2)) { i + 2 } else { i + 1 };
            found.push(ent("date", text, s, toks[end].1, 0.9));
            i = end + 1;
            continue;
        }
        let lower = w.to_ascii_lowercase();
        if WEEKDAYS.contains(&lower.as_str()) || (RELATIVE_DAYS.contains(&lower.as_str())) {
            found.push(ent("date", text, s, toks[i].1, 0.8));
            i += 1;
            continue;
        }
        if is_year(w)
            && matches!(word(i.wrapping_sub(1)).to_ascii_lowercase().as_str(), "in" | "since" | "until" | "by")
        {
            found.push(ent("date", text, s, toks[i].1, 0.7));
            i += 1;
            continue;
        }
        // Names: a run of capitalised words (a title may start it), classified.
        let title = TITLES.contains(&lower.as_str()) && capitalised(word(i + 1).trim_start_matches('.'));
        if capitalised(w) && (!STOP.contains(&lower.as_str()) || title) {
            let mut j = i + 1;
            if title && word(j) == "." {
                j += 1;
            }
            while j < toks.len() && (capitalised(word(j)) || (word(j) == "&" && capitalised(word(j + 1)))) {
                if is_month(word(j)) || WEEKDAYS.contains(&word(j).to_ascii_lowercase().as_str()) {
                    break;
                }
                j += 1;
            }
            // A title needs a name after it ("Dr May" with May a month is no name).
            let named_from = if title { (i + 1..j).find(|k| capitalised(word(*k))) } else { Some(i) };
            let Some(named_from) = named_from else {
                i = j.max(i + 1);
                continue;
            };
            let run: Vec<String> = (i..j).map(|k| word(k).to_ascii_lowercase()).collect();
            let prev = word(i.wrapping_sub(1)).to_ascii_lowercase();
            let sentence_start = i == 0 || matches!(word(i - 1), "." | "!" | "?" | ":" | "\"");
            let last = run.last().cloned().unwrap_or_default();
            let first_word = run.first().cloned().unwrap_or_default();
            let kind = if title {
                Some(("person", 0.9))
            } else if (ORG_SUFFIXES.contains(&last.as_str()) && run.len() > 1)
                || run.iter().any(|r| ORGS.contains(&r.as_str()))
            {
                Some(("org", 0.9))
            } else if run.iter().all(|r| PLACES.contains(&r.as_str()))
                || (PLACES.contains(&first_word.as_str()) && run.len() <= 3)
            {
                Some(("location", 0.9))
            } else if FIRST_NAMES.contains(&first_word.as_str()) {
                Some(("person", 0.9))
            } else if matches!(prev.as_str(), "in" | "from" | "to" | "near" | "visited" | "across") && !sentence_start {
                Some(("location", 0.7))
            } else if matches!(prev.as_str(), "at" | "for" | "joined" | "with" | "by") && !sentence_start {
                Some(("org", 0.6))
            } else if run.len() >= 2 && !sentence_start {
                Some(("person", 0.6))
            } else {
                None
            };
            if let Some((t, c)) = kind {
                let (start, end) = (toks[named_from].0, toks[j - 1].1);
                if start < end {
                    found.push(ent(t, text, start, end, c));
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    found.retain(|e| wanted(&e.entity_type));
    found.sort_by_key(|e| e.start);
    found
}

/// Memories an entity may be mentioned by and still relate them (see [`EntityIndex::neighbours`]).
pub const MAX_MENTIONS: usize = 200;

/// Which memories of a namespace mention which entities (kept in memory, rebuilt on load).
#[derive(Default, Debug, Clone)]
pub struct EntityIndex {
    by_memory: HashMap<String, Vec<String>>,
    by_entity: HashMap<String, BTreeSet<String>>,
}

impl EntityIndex {
    /// The entity keys a content mentions, sorted, once each (what [`Self::set_keys`] records).
    pub fn keys_of(content: &str) -> Vec<String> {
        let mut keys: Vec<String> = extract(content, &[]).iter().map(Entity::key).collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Record what `id`'s content mentions (replacing what it mentioned before).
    pub fn set(&mut self, id: &str, content: &str) {
        self.set_keys(id, Self::keys_of(content));
    }

    /// Record the entity keys `id` mentions (from [`Self::keys_of`]).
    pub fn set_keys(&mut self, id: &str, keys: Vec<String>) {
        self.remove(id);
        for k in &keys {
            self.by_entity.entry(k.clone()).or_default().insert(id.to_string());
        }
        if !keys.is_empty() {
            self.by_memory.insert(id.to_string(), keys);
        }
    }

    pub fn remove(&mut self, id: &str) {
        if let Some(keys) = self.by_memory.remove(id) {
            for k in keys {
                if let Some(set) = self.by_entity.get_mut(&k) {
                    set.remove(id);
                    if set.is_empty() {
                        self.by_entity.remove(&k);
                    }
                }
            }
        }
    }

    pub fn entities_of(&self, id: &str) -> &[String] {
        self.by_memory.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The memories sharing at least one entity (of `types`; all when empty) with `id`, with
    /// how many they share, at most `limit`, most shared first, then by id.
    pub fn neighbours(&self, id: &str, types: &[String], limit: usize) -> Vec<(String, usize)> {
        let mut shared: BTreeMap<&str, usize> = BTreeMap::new();
        for k in self.entities_of(id) {
            let t = k.split(':').next().unwrap_or("");
            if !types.is_empty() && !types.iter().any(|x| canonical_type(x) == Some(t)) {
                continue;
            }
            let Some(mentions) = self.by_entity.get(k) else { continue };
            // An entity most memories mention ("today") relates nothing, and walking it would
            // cost as much as the namespace.
            if mentions.len() > MAX_MENTIONS {
                continue;
            }
            for other in mentions {
                if other != id {
                    *shared.entry(other.as_str()).or_default() += 1;
                }
            }
        }
        let mut v: Vec<(String, usize)> = shared.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        v
    }

    /// Distinct entities mentioned in the namespace.
    pub fn len(&self) -> usize {
        self.by_entity.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_entity.is_empty()
    }

    /// The memories mentioning an entity key (`type:value`).
    pub fn mentions(&self, key: &str) -> Vec<String> {
        self.by_entity.get(key).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        extract(text, &[]).into_iter().map(|e| (e.entity_type, e.value)).collect()
    }

    fn has(text: &str, t: &str, v: &str) -> bool {
        pairs(text).iter().any(|(a, b)| a == t && b == v)
    }

    #[test]
    fn shapes_are_found_exactly() {
        let t = "Mail anna@example.org or see https://example.org/x, it costs $1,200 or 30 EUR by 2024-05-01.";
        assert!(has(t, "email", "anna@example.org"));
        assert!(has(t, "url", "https://example.org/x"));
        assert!(has(t, "amount", "$1,200"));
        assert!(has(t, "amount", "30 EUR"));
        assert!(has(t, "date", "2024-05-01"));
    }

    #[test]
    fn names_are_classified() {
        assert!(has("Anna lives in Berlin", "person", "Anna"));
        assert!(has("Anna lives in Berlin", "location", "Berlin"));
        assert!(has("Anna works at Siemens in Munich", "org", "Siemens"));
        assert!(has("OpenAI released GPT-4 in San Francisco", "org", "OpenAI"));
        assert!(has("OpenAI released GPT-4 in San Francisco", "location", "San Francisco"));
        assert!(has("We met Dr. Jane Foster on March 5, 2024", "person", "Jane Foster"));
        assert!(has("We met Dr. Jane Foster on March 5, 2024", "date", "March 5, 2024"));
        assert!(pairs("The meeting is at noon").is_empty());
    }

    #[test]
    fn types_filter_the_answer() {
        let only: Vec<String> = vec!["location".into()];
        let got = extract("Anna lives in Berlin", &only);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value, "Berlin");
        let aliases: Vec<String> = vec!["organization".into()];
        assert_eq!(extract("Anna works at Siemens", &aliases)[0].entity_type, "org");
    }

    #[test]
    fn spans_point_into_the_text() {
        let t = "Héllo Anna, from Zürich to Paris.";
        for e in extract(t, &[]) {
            assert_eq!(&t[e.start..e.end], e.value);
        }
    }

    #[test]
    fn a_title_without_a_name_is_no_name_and_no_panic() {
        for t in ["Dr May", "Mr May", "Ms April Jones", "Prof Monday", "Dr.", "Dr. .", "Mr", "Dr Dr"] {
            for e in extract(t, &[]) {
                assert_eq!(t.get(e.start..e.end), Some(e.value.as_str()), "{t:?}");
            }
        }
        assert!(pairs("Dr May").is_empty());
        assert!(has("We met Dr Jane Foster", "person", "Jane Foster"));
    }

    /// Sequences of the words the rules look at (titles, months, weekdays, names, currency,
    /// punctuation) in every order: no panic, every span inside the text.
    #[test]
    fn arbitrary_word_sequences_never_panic() {
        let words = [
            "Dr",
            "Dr.",
            "Mr",
            "Ms.",
            "Prof",
            "May",
            "June",
            "Monday",
            "March",
            "5",
            "2024",
            ",",
            ".",
            "$",
            "€",
            "£",
            "1,200",
            "EUR",
            "Anna",
            "Berlin",
            "Siemens",
            "Inc",
            "in",
            "at",
            "the",
            "&",
            "a@b.co",
            "https://x.y",
            "12th",
            "Ünïcode",
            "日本",
            "'",
            "-",
            "Co.",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 7) as usize + 1;
            let mut y = x;
            let text: Vec<&str> = (0..n)
                .map(|_| {
                    y = y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    words[(y >> 33) as usize % words.len()]
                })
                .collect();
            let sep = if x & 1 == 0 { " " } else { "" };
            let text = text.join(sep);
            for e in extract(&text, &[]) {
                assert_eq!(text.get(e.start..e.end), Some(e.value.as_str()), "{text:?}");
                assert!(e.start < e.end, "{text:?}");
            }
        }
    }

    /// Any text, however odd, extracts without a panic and every span points into it.
    #[test]
    fn arbitrary_text_never_panics() {
        let pool: Vec<char> = "aZé日€£$¥@.,:;!?-'&/ 0123456789\n\tMrDr.https://www.x@y.z Ü😀"
            .chars()
            .chain(['\u{0}', '\u{200b}'])
            .collect();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let len = (x % 40) as usize;
            let text: String = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    pool[(x >> 33) as usize % pool.len()]
                })
                .collect();
            for e in extract(&text, &[]) {
                assert_eq!(text.get(e.start..e.end), Some(e.value.as_str()), "{text:?}");
            }
            x = x.rotate_left(7) ^ len as u64;
        }
    }

    #[test]
    fn the_index_relates_memories_that_share_an_entity() {
        let mut ix = EntityIndex::default();
        ix.set("a", "Anna lives in Berlin");
        ix.set("b", "Anna works at Siemens in Munich");
        ix.set("c", "The weather is nice");
        assert_eq!(ix.neighbours("a", &[], 10), vec![("b".to_string(), 1)]);
        assert!(ix.neighbours("c", &[], 10).is_empty());
        assert!(ix.neighbours("a", &["location".to_string()], 10).is_empty(), "they share a person, not a place");
        ix.set("a", "Nothing here");
        assert!(ix.neighbours("b", &[], 10).is_empty());
        ix.remove("b");
        assert!(ix.is_empty());
    }

    /// Precision and recall on the labelled set (tests/fixtures/entities.json): the figures in
    /// docs/recall.md. A floor guards against regressions.
    #[test]
    fn precision_and_recall_on_the_labelled_set() {
        #[derive(Deserialize)]
        struct Case {
            text: String,
            entities: Vec<(String, String)>,
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/entities.json");
        let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
        assert!(cases.len() >= 40);
        let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
        let mut per_type: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for c in &cases {
            let got: BTreeSet<(String, String)> = pairs(&c.text).into_iter().collect();
            let want: BTreeSet<(String, String)> = c.entities.iter().cloned().collect();
            for g in &got {
                let e = per_type.entry(g.0.clone()).or_default();
                if want.contains(g) {
                    tp += 1;
                    e.0 += 1;
                } else {
                    fp += 1;
                    e.1 += 1;
                }
            }
            for w in want.difference(&got) {
                fn_ += 1;
                per_type.entry(w.0.clone()).or_default().2 += 1;
            }
        }
        let precision = tp as f64 / (tp + fp).max(1) as f64;
        let recall = tp as f64 / (tp + fn_).max(1) as f64;
        println!(
            "entities: {} cases, precision {precision:.3}, recall {recall:.3} (tp {tp}, fp {fp}, fn {fn_})",
            cases.len()
        );
        for (t, (tp, fp, fn_)) in &per_type {
            println!("  {t}: tp {tp} fp {fp} fn {fn_}");
        }
        assert!(precision >= 0.85, "precision {precision:.3}");
        assert!(recall >= 0.75, "recall {recall:.3}");
    }
}
