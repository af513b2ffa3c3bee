//! Node-wide BM25 full-text index (tantivy) over blind-indexed terms.
//!
//! Plaintext never reaches tantivy: text is analysed in memory (tokenise, lower-case, stem), and
//! each term is replaced by a truncated HMAC under the namespace's search key (derived from its
//! data key) before indexing. BM25 still works because equal terms map to equal tokens within a
//! namespace; across namespaces the same word yields unrelated tokens. Queries are blinded the
//! same way. One index serves every namespace on the node, with a namespace field.
//!
//! No plaintext at all reaches it: a document's delete key is a blind token of its memory id
//! and the stored id is sealed under the namespace's data key. Dropping a namespace is
//! therefore one delete-by-term and a commit, whatever the size of the index: once the data key
//! is destroyed, what the deleted documents leave in segment files until tantivy's merges
//! reclaim them can be neither read nor linked to anything.
//!
//! BM25 is scored with per-namespace statistics ([`NsStatistics`]): the document count, the
//! average field length and every term's document frequency are those of the namespace's live
//! documents alone, so one tenant's scores do not move when another tenant writes, deletes or
//! is dropped (and do not depend on how deletions and merges have shaped the segments).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tantivy::collector::TopDocs;
use tantivy::query::{Bm25StatisticsProvider, BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, WhitespaceTokenizer,
};
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TERMINATED, TantivyDocument, Term,
};

use crate::crypto::{DataKey, RecordKind};
use crate::error::Result;

const BLIND_TOKENIZER: &str = "loci_blind";
const WRITER_BUDGET_BYTES: usize = 32 * 1024 * 1024;

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    ns: Field,
    mid: Field,
    ver: Field,
    text: Field,
}

pub struct TextIndex {
    /// Held with its writer and reader; tests inspect its segments.
    #[cfg_attr(not(test), allow(dead_code))]
    index: Index,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    fields: Fields,
    dirty: AtomicBool,
    analyzer: Mutex<TextAnalyzer>,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let key = b.add_text_field("key", STRING);
    let ns = b.add_u64_field("ns", NumericOptions::default().set_indexed());
    let mid = b.add_text_field("mid", STRING | STORED);
    let ver = b.add_u64_field("ver", NumericOptions::default().set_stored());
    let text = b.add_text_field(
        "text",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer(BLIND_TOKENIZER).set_index_option(IndexRecordOption::WithFreqs),
        ),
    );
    (b.build(), Fields { key, ns, mid, ver, text })
}

/// The on-disk format; an index of another format is rebuilt (from the authoritative rows, by
/// each namespace's reconciliation when it loads).
const FORMAT: &str = "2";
const FORMAT_FILE: &str = "LOCI_TEXT_FORMAT";

/// The delete key of a memory's document: the namespace and a blind token of the id
/// (domain-separated from text terms).
fn doc_key(key: &DataKey, mid: &str) -> String {
    format!("{:016x}/{}", key.ns_id(), key.blind(&format!("\u{0}id\u{0}{mid}")))
}

fn seal_id(key: &DataKey, mid: &str) -> String {
    hex::encode(key.seal(RecordKind::TextId, b"", mid.as_bytes()))
}

fn open_id(key: &DataKey, sealed: &str) -> Option<String> {
    let bytes = hex::decode(sealed).ok()?;
    String::from_utf8(key.open(RecordKind::TextId, b"", &bytes).ok()?).ok()
}

impl TextIndex {
    pub fn open(dir: &Path) -> Result<Self> {
        let marker = dir.join(FORMAT_FILE);
        if dir.exists() && std::fs::read_to_string(&marker).ok().as_deref() != Some(FORMAT) {
            tracing::warn!(dir = %dir.display(), "text index of an older format: rebuilding it from the rows");
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        std::fs::write(&marker, FORMAT)?;
        let (schema, fields) = schema();
        let mmap = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| crate::StorageError::Encoding(format!("text index directory: {e}")))?;
        let index = Index::open_or_create(mmap, schema)?;
        Self::with_index(index, fields)
    }

    pub fn open_in_ram() -> Result<Self> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self> {
        index.tokenizers().register(BLIND_TOKENIZER, TextAnalyzer::builder(WhitespaceTokenizer::default()).build());
        let writer = index.writer_with_num_threads(1, WRITER_BUDGET_BYTES)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .filter(Stemmer::new(Language::English))
            .build();
        Ok(TextIndex {
            index,
            writer: Mutex::new(writer),
            reader,
            fields,
            dirty: AtomicBool::new(false),
            analyzer: Mutex::new(analyzer),
        })
    }

    /// Plaintext terms of `text` (in memory only).
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut a = self.analyzer.lock();
        let mut stream = a.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    fn blinded(&self, key: &DataKey, text: &str) -> Vec<String> {
        self.terms(text).iter().map(|t| key.blind(t)).collect()
    }

    /// Index (or re-index) one memory's text.
    pub fn upsert(&self, key: &DataKey, mid: &str, version: u64, text: &str) -> Result<()> {
        let tokens = self.blinded(key, text).join(" ");
        let f = self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_text(f.key, doc_key(key, mid));
        doc.add_u64(f.ns, key.ns_id());
        doc.add_text(f.mid, seal_id(key, mid));
        doc.add_u64(f.ver, version);
        doc.add_text(f.text, &tokens);
        let w = self.writer.lock();
        w.delete_term(Term::from_field_text(f.key, &doc_key(key, mid)));
        w.add_document(doc)?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    pub fn delete(&self, key: &DataKey, mid: &str) {
        let w = self.writer.lock();
        w.delete_term(Term::from_field_text(self.fields.key, &doc_key(key, mid)));
        self.dirty.store(true, Ordering::Release);
    }

    /// Drop every document of a namespace: one delete-by-term and a commit, the same cost for a
    /// namespace of one document as for one of a million, and none for the other namespaces'
    /// segments (no merge; tantivy's merge policy reclaims the space as segments merge).
    pub fn drop_namespace(&self, ns: u64) -> Result<()> {
        {
            let w = self.writer.lock();
            w.delete_term(Term::from_field_u64(self.fields.ns, ns));
            self.dirty.store(true, Ordering::Release);
        }
        self.commit()
    }

    /// Make every change durable and visible. Cheap when nothing changed.
    ///
    /// `dirty` is set under the writer lock by every change and cleared under it only once the
    /// reader has been reloaded, so a caller that finds it clear sees every change made before
    /// it; a caller that finds it set waits for the commit in progress (the periodic committer's
    /// or another search's) instead of reading the reader it is about to replace.
    pub fn commit(&self) -> Result<()> {
        if !self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut w = self.writer.lock();
        if !self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        w.commit()?;
        self.reader.reload()?;
        self.dirty.store(false, Ordering::Release);
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    fn ns_clause(&self, ns: u64) -> Box<dyn Query> {
        let q = TermQuery::new(Term::from_field_u64(self.fields.ns, ns), IndexRecordOption::Basic);
        Box::new(ConstScoreQuery::new(Box::new(q), 0.0))
    }

    /// BM25 top `limit` memory ids of the namespace for `query`.
    pub fn search(&self, key: &DataKey, query: &str, limit: usize) -> Result<Vec<(String, f32)>> {
        self.commit()?;
        let mut tokens = self.blinded(key, query);
        tokens.sort();
        tokens.dedup();
        if tokens.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let terms: Vec<(Occur, Box<dyn Query>)> = tokens
            .iter()
            .map(|t| {
                let q: Box<dyn Query> =
                    Box::new(TermQuery::new(Term::from_field_text(self.fields.text, t), IndexRecordOption::WithFreqs));
                (Occur::Should, q)
            })
            .collect();
        let query = BooleanQuery::new(vec![
            (Occur::Must, self.ns_clause(key.ns_id())),
            (Occur::Must, Box::new(BooleanQuery::new(terms))),
        ]);
        let searcher = self.reader.searcher();
        let stats = NsStatistics::collect(&searcher, self.fields, key.ns_id())?;
        if stats.docs == 0 {
            return Ok(Vec::new());
        }
        let top =
            searcher.search_with_statistics_provider(&query, &TopDocs::with_limit(limit).order_by_score(), &stats)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            if let Some(mid) = doc.get_first(self.fields.mid).and_then(|v| v.as_str()).and_then(|s| open_id(key, s)) {
                out.push((mid, score));
            }
        }
        // Equal scores in a stable order (not the segment layout's).
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// The BM25 statistics `search` scores a namespace with (for tests and diagnostics).
    pub fn namespace_statistics(&self, ns: u64) -> Result<(u64, u64)> {
        self.commit()?;
        let searcher = self.reader.searcher();
        let stats = NsStatistics::collect(&searcher, self.fields, ns)?;
        Ok((stats.docs, stats.tokens))
    }

    /// Every indexed memory of a namespace with its version (for crash reconciliation).
    pub fn list(&self, key: &DataKey) -> Result<HashMap<String, u64>> {
        self.commit()?;
        let searcher = self.reader.searcher();
        let q = TermQuery::new(Term::from_field_u64(self.fields.ns, key.ns_id()), IndexRecordOption::Basic);
        let docs = searcher.search(&q, &tantivy::collector::DocSetCollector)?;
        let mut out = HashMap::with_capacity(docs.len());
        for addr in docs {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let mid = doc.get_first(self.fields.mid).and_then(|v| v.as_str()).and_then(|s| open_id(key, s));
            let ver = doc.get_first(self.fields.ver).and_then(|v| v.as_u64()).unwrap_or(0);
            if let Some(mid) = mid {
                out.insert(mid, ver);
            }
        }
        Ok(out)
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }
}

/// BM25 statistics of one namespace, over its live documents in one searcher's segments.
///
/// * documents: the namespace's live documents (deleted ones not yet merged away excluded);
/// * tokens: the sum of their text field lengths as tantivy records them per document (the
///   fieldnorm, exact up to 40 tokens and bucketed beyond), so the average length is the
///   namespace's;
/// * a term's document frequency: the namespace's live documents holding it.
///
/// Built per search in O(documents of the namespace): a walk of the namespace term's postings
/// with one fieldnorm read each. A term's frequency is read from the term dictionary in a
/// segment without deletions (blind tokens are per namespace, so every document holding one is
/// the namespace's); in a segment with deletions, the term's postings are walked and counted
/// against the namespace's live documents.
struct NsStatistics<'a> {
    searcher: &'a Searcher,
    /// (segment ordinal, the namespace's live documents in it as a bit set when the segment
    /// has deletions).
    segments: Vec<(usize, Option<DocBits>)>,
    docs: u64,
    tokens: u64,
}

impl<'a> NsStatistics<'a> {
    fn collect(searcher: &'a Searcher, fields: Fields, ns: u64) -> Result<Self> {
        let term = Term::from_field_u64(fields.ns, ns);
        let mut segments = Vec::with_capacity(searcher.segment_readers().len());
        let (mut docs, mut tokens) = (0u64, 0u64);
        for (ord, seg) in searcher.segment_readers().iter().enumerate() {
            let mut live = seg.has_deletes().then(|| DocBits::new(seg.max_doc()));
            let mut count = 0u64;
            if let Some(mut postings) = seg.inverted_index(fields.ns)?.read_postings(&term, IndexRecordOption::Basic)? {
                let norms = seg.get_fieldnorms_reader(fields.text)?;
                let alive = seg.alive_bitset();
                let mut d = postings.doc();
                while d != TERMINATED {
                    if alive.is_none_or(|a| a.is_alive(d)) {
                        if let Some(live) = live.as_mut() {
                            live.insert(d);
                        }
                        count += 1;
                        tokens += u64::from(norms.fieldnorm(d));
                    }
                    d = postings.advance();
                }
            }
            docs += count;
            if count > 0 {
                segments.push((ord, live));
            }
        }
        Ok(NsStatistics { searcher, segments, docs, tokens })
    }
}

/// A set of a segment's document ids.
struct DocBits(Vec<u64>);

impl DocBits {
    fn new(max_doc: DocId) -> Self {
        DocBits(vec![0; (max_doc as usize).div_ceil(64)])
    }

    fn insert(&mut self, d: DocId) {
        if let Some(w) = self.0.get_mut(d as usize / 64) {
            *w |= 1 << (d % 64);
        }
    }

    fn contains(&self, d: DocId) -> bool {
        self.0.get(d as usize / 64).is_some_and(|w| w & (1 << (d % 64)) != 0)
    }
}

impl Bm25StatisticsProvider for NsStatistics<'_> {
    fn total_num_tokens(&self, _field: Field) -> tantivy::Result<u64> {
        // Only the text field is scored; at least one token keeps the average defined.
        Ok(self.tokens.max(1))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.docs.max(1))
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let mut n = 0u64;
        for (ord, live) in &self.segments {
            let index = self.searcher.segment_reader(*ord as u32).inverted_index(term.field())?;
            let Some(live) = live else {
                n += u64::from(index.doc_freq(term)?);
                continue;
            };
            let Some(mut postings) = index.read_postings(term, IndexRecordOption::Basic)? else {
                continue;
            };
            let mut d = postings.doc();
            while d != TERMINATED {
                if live.contains(d) {
                    n += 1;
                }
                d = postings.advance();
            }
        }
        // Never above the document count (tantivy requires it; only a blind-token collision
        // across namespaces, 96 bits, could get there).
        Ok(n.min(self.docs.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterSecret;

    fn keys() -> (DataKey, DataKey) {
        let (ring, _) = MasterSecret::parse(&"33".repeat(32)).unwrap().establish().unwrap();
        (ring.unwrap(1, &ring.new_wrapped_dek(1, 1)).unwrap(), ring.unwrap(2, &ring.new_wrapped_dek(2, 1)).unwrap())
    }

    #[test]
    fn bm25_over_blind_terms_is_namespace_scoped() {
        let idx = TextIndex::open_in_ram().unwrap();
        let (a, b) = keys();
        idx.upsert(&a, "m1", 1, "The user loves dark roast coffee").unwrap();
        idx.upsert(&a, "m2", 1, "Meeting moved to Tuesday").unwrap();
        idx.upsert(&b, "m3", 1, "coffee coffee coffee").unwrap();
        let hits = idx.search(&a, "coffee", 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, "m1");
        // stemming: "meetings" finds "Meeting"
        assert_eq!(idx.search(&a, "meetings", 10).unwrap()[0].0, "m2");
        // re-index replaces, delete removes
        idx.upsert(&a, "m1", 2, "tea only").unwrap();
        assert!(idx.search(&a, "coffee", 10).unwrap().is_empty());
        idx.delete(&a, "m2");
        assert!(idx.search(&a, "tuesday", 10).unwrap().is_empty());
        assert_eq!(idx.list(&a).unwrap().get("m1"), Some(&2));
        idx.drop_namespace(2).unwrap();
        assert!(idx.search(&b, "coffee", 10).unwrap().is_empty());
    }

    #[test]
    fn a_search_sees_every_change_made_before_it_while_another_thread_commits() {
        // The periodic committer and a search both commit; a search that finds the committer
        // mid-commit must wait for it rather than read the reader about to be replaced.
        let (a, _) = keys();
        let idx = std::sync::Arc::new(TextIndex::open_in_ram().unwrap());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let committer = {
            let (idx, stop) = (idx.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    idx.commit().unwrap();
                }
            })
        };
        for i in 0..300u64 {
            let word = format!("word{i}");
            idx.upsert(&a, "m1", i + 1, &format!("{word} lives here")).unwrap();
            let hits = idx.search(&a, &word, 1).unwrap();
            assert_eq!(hits.len(), 1, "round {i}: the change just made is not visible");
        }
        stop.store(true, Ordering::Relaxed);
        committer.join().unwrap();
    }

    #[test]
    fn scores_use_the_namespace_live_statistics_only() {
        let (a, b) = keys();
        let docs = [("m1", "coffee in the morning"), ("m2", "coffee coffee and tea"), ("m3", "tea at noon")];
        // A fresh index holding exactly A's documents.
        let fresh = TextIndex::open_in_ram().unwrap();
        for (id, text) in docs {
            fresh.upsert(&a, id, 1, text).unwrap();
        }
        let expected = fresh.search(&a, "coffee tea", 10).unwrap();
        assert_eq!(expected.len(), 3);
        assert_eq!(fresh.namespace_statistics(1).unwrap().0, 3);

        // The same documents among another namespace's, with deleted documents of A not yet
        // merged away and documents replaced: the same scores, to the bit.
        let idx = TextIndex::open_in_ram().unwrap();
        for i in 0..200 {
            idx.upsert(&b, &format!("b{i}"), 1, "coffee coffee coffee tea with a much longer text than A has").unwrap();
        }
        idx.upsert(&a, "gone", 1, "coffee tea coffee tea").unwrap();
        idx.upsert(&a, "m1", 1, "something else entirely").unwrap();
        idx.commit().unwrap();
        for (id, text) in docs {
            idx.upsert(&a, id, 1, text).unwrap();
        }
        idx.delete(&a, "gone");
        idx.commit().unwrap();
        assert_eq!(idx.namespace_statistics(1).unwrap().0, 3);
        assert_eq!(idx.namespace_statistics(2).unwrap().0, 200);
        assert_eq!(idx.search(&a, "coffee tea", 10).unwrap(), expected);
        idx.drop_namespace(2).unwrap();
        assert_eq!(idx.namespace_statistics(2).unwrap(), (0, 0));
        assert_eq!(idx.search(&a, "coffee tea", 10).unwrap(), expected);
    }

    /// Every byte tantivy wrote for the index in `dir`.
    fn index_bytes(dir: &Path) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                all.extend(std::fs::read(p).unwrap());
            }
        }
        all
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn no_plaintext_reaches_the_index_files_and_ids_read_back_only_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = keys();
        let idx = TextIndex::open(dir.path()).unwrap();
        idx.upsert(&a, "user-alice@example.com-note", 1, "Alice prefers oat milk").unwrap();
        idx.commit().unwrap();
        let bytes = index_bytes(dir.path());
        assert!(!bytes.is_empty());
        for plain in [&b"alice@example.com"[..], b"oat", b"prefer", b"Alice"] {
            assert!(!contains(&bytes, plain), "{} in the index files", String::from_utf8_lossy(plain));
        }
        assert_eq!(idx.list(&a).unwrap().get("user-alice@example.com-note"), Some(&1));
        // Another namespace's key finds nothing and reads no id.
        assert!(idx.list(&b).unwrap().is_empty());
        assert!(idx.search(&b, "oat milk", 10).unwrap().is_empty());
    }

    #[test]
    fn dropping_a_namespace_leaves_the_other_segments_alone() {
        let idx = TextIndex::open_in_ram().unwrap();
        // Only what the drop itself does to segments is observed.
        idx.writer.lock().set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
        let (a, b) = keys();
        for i in 0..50 {
            idx.upsert(&b, &format!("b{i}"), 1, "tea in the afternoon").unwrap();
            if i % 10 == 9 {
                idx.commit().unwrap();
            }
        }
        idx.upsert(&a, "a1", 1, "coffee").unwrap();
        idx.commit().unwrap();
        let before: std::collections::BTreeSet<_> = idx.index.searchable_segment_ids().unwrap().into_iter().collect();
        idx.drop_namespace(1).unwrap();
        let after: std::collections::BTreeSet<_> = idx.index.searchable_segment_ids().unwrap().into_iter().collect();
        // Every other segment is untouched; the one holding only the dropped namespace's
        // document is gone (tantivy drops a segment whose documents are all deleted).
        assert!(after.is_subset(&before), "no segment was written");
        assert_eq!(before.len() - after.len(), 1, "only the dropped namespace's segment went");
        assert!(idx.search(&a, "coffee", 10).unwrap().is_empty());
        assert_eq!(idx.namespace_statistics(1).unwrap(), (0, 0));
        assert_eq!(idx.search(&b, "tea", 100).unwrap().len(), 50);
    }

    #[test]
    fn an_index_of_the_older_format_is_rebuilt_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = keys();
        {
            let idx = TextIndex::open(dir.path()).unwrap();
            idx.upsert(&a, "m1", 1, "kept across a restart").unwrap();
            idx.commit().unwrap();
        }
        assert_eq!(TextIndex::open(dir.path()).unwrap().list(&a).unwrap().len(), 1, "same format: kept");
        std::fs::remove_file(dir.path().join(FORMAT_FILE)).unwrap();
        assert!(TextIndex::open(dir.path()).unwrap().list(&a).unwrap().is_empty(), "no marker: rebuilt");
    }
}
