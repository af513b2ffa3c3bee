//! Node-wide BM25 full-text index (tantivy) over blind-indexed terms.
//!
//! Plaintext never reaches tantivy: text is analysed in memory (tokenise, lower-case, stem), and
//! each term is replaced by a truncated HMAC under the namespace's search key (derived from its
//! data key) before indexing. BM25 still works because equal terms map to equal tokens within a
//! namespace; across namespaces the same word yields unrelated tokens. Queries are blinded the
//! same way. One index serves every namespace on the node, with a namespace field.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, WhitespaceTokenizer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::crypto::DataKey;
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

fn doc_key(ns: u64, mid: &str) -> String {
    format!("{ns:016x}/{mid}")
}

impl TextIndex {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
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
        doc.add_text(f.key, doc_key(key.ns_id(), mid));
        doc.add_u64(f.ns, key.ns_id());
        doc.add_text(f.mid, mid);
        doc.add_u64(f.ver, version);
        doc.add_text(f.text, &tokens);
        let w = self.writer.lock();
        w.delete_term(Term::from_field_text(f.key, &doc_key(key.ns_id(), mid)));
        w.add_document(doc)?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    pub fn delete(&self, ns: u64, mid: &str) {
        let w = self.writer.lock();
        w.delete_term(Term::from_field_text(self.fields.key, &doc_key(ns, mid)));
        self.dirty.store(true, Ordering::Release);
    }

    pub fn drop_namespace(&self, ns: u64) -> Result<()> {
        {
            let w = self.writer.lock();
            w.delete_term(Term::from_field_u64(self.fields.ns, ns));
        }
        self.dirty.store(true, Ordering::Release);
        self.commit()?;
        // Merge so the deleted documents' segments are rewritten without them.
        let ids = self.index.searchable_segment_ids()?;
        if !ids.is_empty() {
            let mut w = self.writer.lock();
            let merge = w.merge(&ids);
            drop(w);
            let _ = merge.wait();
            self.writer.lock().garbage_collect_files().wait()?;
        }
        self.reader.reload()?;
        Ok(())
    }

    /// Make every change durable and visible. Cheap when nothing changed.
    pub fn commit(&self) -> Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let mut w = self.writer.lock();
        if let Err(e) = w.commit() {
            self.dirty.store(true, Ordering::Release);
            return Err(e.into());
        }
        drop(w);
        self.reader.reload()?;
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
        let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            if let Some(mid) = doc.get_first(self.fields.mid).and_then(|v| v.as_str()) {
                out.push((mid.to_string(), score));
            }
        }
        Ok(out)
    }

    /// Every indexed memory of a namespace with its version (for crash reconciliation).
    pub fn list(&self, ns: u64) -> Result<HashMap<String, u64>> {
        self.commit()?;
        let searcher = self.reader.searcher();
        let q = TermQuery::new(Term::from_field_u64(self.fields.ns, ns), IndexRecordOption::Basic);
        let docs = searcher.search(&q, &tantivy::collector::DocSetCollector)?;
        let mut out = HashMap::with_capacity(docs.len());
        for addr in docs {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let mid = doc.get_first(self.fields.mid).and_then(|v| v.as_str()).map(str::to_string);
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
        idx.delete(1, "m2");
        assert!(idx.search(&a, "tuesday", 10).unwrap().is_empty());
        assert_eq!(idx.list(1).unwrap().get("m1"), Some(&2));
        idx.drop_namespace(2).unwrap();
        assert!(idx.search(&b, "coffee", 10).unwrap().is_empty());
    }
}
