//! openraft storage (v2) on its own RocksDB: the log store and the catalogue state machine.
//!
//! Log and vote writes are synced (`WriteOptions::set_sync`) before openraft is told they are
//! durable. The state machine is in memory; snapshots are whole-catalogue JSON blobs persisted in
//! the same DB, and opening the store rebuilds the state from the last snapshot plus the
//! committed log, so the catalogue is readable before Raft even starts.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parking_lot::RwLock;
use rocksdb::{ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::catalogue::{Catalogue, CommandResult};
use crate::{NodeId, TypeConfig};

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";
/// The snapshot as one JSON document whose data is a JSON array of numbers (written before
/// 0.1 of the split below; still read, removed by the next snapshot).
const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// The snapshot's meta (JSON) and its data (the catalogue's JSON bytes as they are).
const KEY_SNAPSHOT_META: &[u8] = b"snapshot_meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"snapshot_data";

type SErr = StorageError<NodeId>;

fn io_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: impl std::error::Error + 'static) -> SErr {
    StorageError::IO { source: StorageIOError::new(subject, verb, AnyError::new(&e)) }
}

fn read_err(e: impl std::error::Error + 'static) -> SErr {
    io_err(ErrorSubject::Store, ErrorVerb::Read, e)
}

fn write_err(e: impl std::error::Error + 'static) -> SErr {
    io_err(ErrorSubject::Store, ErrorVerb::Write, e)
}

fn idx_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Opens the Raft RocksDB (CFs `logs` and `meta`).
pub fn open_db(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_keep_log_file_num(3);
    let cfs = [CF_LOGS, CF_META].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
}

/// Open the Raft RocksDB read-only (inspection before start; writes nothing).
pub fn open_db_read_only(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let opts = Options::default();
    Ok(Arc::new(DB::open_cf_for_read_only(&opts, dir, [CF_LOGS, CF_META], false)?))
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("raft column family exists")
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

fn get_meta<T: for<'de> Deserialize<'de>>(db: &DB, key: &[u8]) -> Result<Option<T>, SErr> {
    match db.get_cf(cf(db, CF_META), key).map_err(read_err)? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v).map(Some).map_err(read_err),
    }
}

fn put_meta<T: Serialize>(db: &DB, key: &[u8], value: &T) -> Result<(), SErr> {
    let v = serde_json::to_vec(value).map_err(write_err)?;
    db.put_cf_opt(cf(db, CF_META), key, v, &synced()).map_err(write_err)
}

/// The persisted snapshot: the split form, else the legacy one.
fn get_snapshot(db: &DB) -> Result<Option<StoredSnapshot>, SErr> {
    if let Some(meta) = get_meta::<SnapshotMeta<NodeId, crate::NodeAddr>>(db, KEY_SNAPSHOT_META)? {
        let data = db.get_cf(cf(db, CF_META), KEY_SNAPSHOT_DATA).map_err(read_err)?.unwrap_or_default();
        return Ok(Some(StoredSnapshot { meta, data }));
    }
    get_meta::<StoredSnapshot>(db, KEY_SNAPSHOT)
}

/// Persist a snapshot (meta and data in one synced batch; the legacy form goes).
fn put_snapshot(db: &DB, meta: &SnapshotMeta<NodeId, crate::NodeAddr>, data: &[u8]) -> Result<(), SErr> {
    let mut batch = WriteBatch::default();
    batch.put_cf(cf(db, CF_META), KEY_SNAPSHOT_META, serde_json::to_vec(meta).map_err(write_err)?);
    batch.put_cf(cf(db, CF_META), KEY_SNAPSHOT_DATA, data);
    batch.delete_cf(cf(db, CF_META), KEY_SNAPSHOT);
    db.write_opt(batch, &synced()).map_err(write_err)
}

// ---------------------------------------------------------------- log store

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> Self {
        LogStore { db }
    }

    fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, SErr> {
        let mut it = self.db.iterator_cf(cf(&self.db, CF_LOGS), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(r) => {
                let (_, v) = r.map_err(read_err)?;
                let e: Entry<TypeConfig> = serde_json::from_slice(&v).map_err(read_err)?;
                Ok(Some(e.log_id))
            }
        }
    }

    /// Committed entries from index `from` on (for rebuilding the state machine at open).
    fn committed_entries_from(&self, from: u64) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let committed: Option<LogId<NodeId>> = get_meta(&self.db, KEY_COMMITTED)?;
        let Some(committed) = committed else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let start = idx_key(from);
        for r in self.db.iterator_cf(cf(&self.db, CF_LOGS), IteratorMode::From(&start, Direction::Forward)) {
            let (_, v) = r.map_err(read_err)?;
            let e: Entry<TypeConfig> = serde_json::from_slice(&v).map_err(read_err)?;
            if e.log_id.index > committed.index {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => *x + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for r in self.db.iterator_cf(cf(&self.db, CF_LOGS), IteratorMode::From(&idx_key(start), Direction::Forward)) {
            let (k, v) = r.map_err(read_err)?;
            let index =
                u64::from_be_bytes(k.as_ref().try_into().map_err(|_| read_err(std::io::Error::other("bad log key")))?);
            if !range.contains(&index) {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let last_purged: Option<LogId<NodeId>> = get_meta(&self.db, KEY_PURGED)?;
        let last = self.last_log_id()?.or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        put_meta(&self.db, KEY_VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        get_meta(&self.db, KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        put_meta(&self.db, KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        Ok(get_meta::<Option<LogId<NodeId>>>(&self.db, KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for e in entries {
            let v = serde_json::to_vec(&e).map_err(write_err)?;
            batch.put_cf(cf(&self.db, CF_LOGS), idx_key(e.log_id.index), v);
        }
        // Synced before openraft counts the entries as durable (a vote or an ack depends on it).
        let db = self.db.clone();
        let res = tokio::task::spawn_blocking(move || db.write_opt(batch, &synced()))
            .await
            .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_LOGS), idx_key(log_id.index), idx_key(u64::MAX));
        self.db.write_opt(batch, &synced()).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        put_meta(&self.db, KEY_PURGED, &log_id)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf(&self.db, CF_LOGS), idx_key(0), idx_key(log_id.index + 1));
        self.db.write_opt(batch, &synced()).map_err(write_err)
    }
}

// ---------------------------------------------------------------- state machine

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SmData {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, crate::NodeAddr>,
    catalogue: Catalogue,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, crate::NodeAddr>,
    data: Vec<u8>,
}

/// Shared read view of the catalogue plus a watch of the applied index.
#[derive(Clone)]
pub struct CatalogueView {
    state: Arc<RwLock<Catalogue>>,
    applied: watch::Receiver<u64>,
}

impl CatalogueView {
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Catalogue> {
        self.state.read()
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Wait until the local replica has applied `index` (read-your-writes across nodes).
    pub async fn wait_applied(&self, index: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.applied.clone();
        tokio::time::timeout(timeout, rx.wait_for(|i| *i >= index)).await.is_ok_and(|r| r.is_ok())
    }

    /// Wait until the catalogue satisfies `pred` (checked now and after every applied entry);
    /// false when `timeout` passed first.
    pub async fn wait_until(&self, timeout: std::time::Duration, mut pred: impl FnMut(&Catalogue) -> bool) -> bool {
        let mut rx = self.applied.clone();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if pred(&self.state.read()) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }
}

pub struct StateMachineStore {
    db: Arc<DB>,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, crate::NodeAddr>,
    catalogue: Arc<RwLock<Catalogue>>,
    applied_tx: Arc<watch::Sender<u64>>,
    snapshot_seq: u64,
}

impl StateMachineStore {
    /// Rebuild the state from the persisted snapshot and the committed log.
    pub fn open(db: Arc<DB>) -> Result<(Self, CatalogueView), SErr> {
        let mut data = SmData::default();
        if let Some(snap) = get_snapshot(&db)? {
            data = serde_json::from_slice(&snap.data).map_err(read_err)?;
            data.catalogue.reindex();
        }
        let log = LogStore::new(db.clone());
        let from = data.last_applied.map_or(0, |l| l.index + 1);
        for e in log.committed_entries_from(from)? {
            apply_entry(&mut data.catalogue, &mut data.last_membership, &e);
            data.last_applied = Some(e.log_id);
        }
        let applied_index = data.last_applied.map_or(0, |l| l.index);
        data.catalogue.applied_index = applied_index;
        let (tx, rx) = watch::channel(applied_index);
        let catalogue = Arc::new(RwLock::new(data.catalogue));
        let view = CatalogueView { state: catalogue.clone(), applied: rx };
        Ok((
            StateMachineStore {
                db,
                last_applied: data.last_applied,
                last_membership: data.last_membership,
                catalogue,
                applied_tx: Arc::new(tx),
                snapshot_seq: 0,
            },
            view,
        ))
    }

    /// What a snapshot holds, cloned (cheap next to serialising it, which the builder does
    /// off the state machine's task).
    fn snapshot_data(&self) -> SmData {
        SmData {
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            catalogue: self.catalogue.read().clone(),
        }
    }
}

fn apply_entry(
    catalogue: &mut Catalogue,
    membership: &mut StoredMembership<NodeId, crate::NodeAddr>,
    e: &Entry<TypeConfig>,
) -> CommandResult {
    let res = match &e.payload {
        EntryPayload::Blank => CommandResult::Ok,
        EntryPayload::Normal(cmd) => catalogue.apply(cmd.clone()),
        EntryPayload::Membership(m) => {
            *membership = StoredMembership::new(Some(e.log_id), m.clone());
            CommandResult::Ok
        }
    };
    catalogue.applied_index = e.log_id.index;
    res
}

pub struct SnapshotBuilder {
    data: Option<SmData>,
    meta: SnapshotMeta<NodeId, crate::NodeAddr>,
    db: Arc<DB>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    /// Serialise and persist on a blocking thread: a catalogue of 50,000 namespaces is tens of
    /// megabytes of JSON.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let data = self.data.take().unwrap_or_default();
        let (meta, db) = (self.meta.clone(), self.db.clone());
        let bytes = tokio::task::spawn_blocking(move || {
            let bytes =
                serde_json::to_vec(&data).map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
            put_snapshot(&db, &meta, &bytes)?;
            Ok::<_, SErr>(bytes)
        })
        .await
        .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))??;
        Ok(Snapshot { meta: self.meta.clone(), snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, crate::NodeAddr>), SErr> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut last = None;
        {
            let mut cat = self.catalogue.write();
            for e in entries {
                out.push(apply_entry(&mut cat, &mut self.last_membership, &e));
                self.last_applied = Some(e.log_id);
                last = Some(e.log_id.index);
            }
        }
        if let Some(i) = last {
            self.applied_tx.send_replace(i);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        let data = self.snapshot_data();
        let id = match self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.snapshot_seq),
            None => format!("none-{}", self.snapshot_seq),
        };
        SnapshotBuilder {
            data: Some(data),
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.last_membership.clone(),
                snapshot_id: id,
            },
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, crate::NodeAddr>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let bytes = snapshot.into_inner();
        let mut data: SmData = serde_json::from_slice(&bytes)
            .map_err(|e| io_err(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Read, e))?;
        data.catalogue.reindex();
        put_snapshot(&self.db, meta, &bytes)?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        let index = meta.last_log_id.map_or(0, |l| l.index);
        {
            let mut cat = self.catalogue.write();
            *cat = data.catalogue;
            cat.applied_index = index;
        }
        self.applied_tx.send_replace(index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        Ok(get_snapshot(&self.db)?.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

/// Compact the Raft DB so purged log entries (which may hold destroyed keys) leave the disk.
pub fn compact(db: &DB) {
    for name in [CF_LOGS, CF_META] {
        let _ = db.flush_cf(cf(db, name));
        db.compact_range_cf::<&[u8], &[u8]>(cf(db, name), None, None);
    }
    let _ = db.flush_wal(true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), SErr> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let db = open_db(dir.path()).map_err(write_err)?;
            let (sm, _) = StateMachineStore::open(db.clone())?;
            Ok((dir, LogStore::new(db), sm))
        }
    }

    /// A snapshot written in the legacy form (one JSON document, data as an array of numbers)
    /// is still read at open; the next snapshot replaces it with the split form.
    #[test]
    fn a_legacy_snapshot_is_read_and_then_replaced() {
        let dir = tempfile::tempdir().expect("dir");
        let db = open_db(dir.path()).expect("db");
        let mut data = SmData::default();
        data.catalogue.cluster_id = Some("legacy".into());
        data.last_applied = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 7));
        let meta = SnapshotMeta {
            last_log_id: data.last_applied,
            last_membership: Default::default(),
            snapshot_id: "s".into(),
        };
        let bytes = serde_json::to_vec(&data).expect("json");
        put_meta(&db, KEY_SNAPSHOT, &StoredSnapshot { meta: meta.clone(), data: bytes.clone() }).expect("legacy");
        let (sm, view) = StateMachineStore::open(db.clone()).expect("open");
        assert_eq!(view.read().cluster_id.as_deref(), Some("legacy"));
        assert_eq!(view.read().applied_index, 7);
        drop(sm);
        put_snapshot(&db, &meta, &bytes).expect("split");
        assert!(db.get_cf(cf(&db, CF_META), KEY_SNAPSHOT).expect("get").is_none(), "the legacy form is gone");
        let got = get_snapshot(&db).expect("read").expect("a snapshot");
        assert_eq!(got.data, bytes, "the data is stored as it is, not as an array of numbers");
        let (_, view) = StateMachineStore::open(db).expect("reopen");
        assert_eq!(view.read().cluster_id.as_deref(), Some("legacy"));
    }

    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }
}
