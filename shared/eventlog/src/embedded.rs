//! The embedded event log: an append-only sequence of segment files under `<data-dir>/log`,
//! written by one group-committing writer thread and read by any number of consumer groups.
//!
//! Durability: an append resolves only after its bytes were written and (in [`SyncMode::Fsync`],
//! the default) `fdatasync`ed, so an acknowledged event survives `kill -9` and power loss.
//! Concurrent appends share one write + sync (group commit), which is what makes per-request
//! durability affordable. Positions of consumer groups live in `consumers/<group>.pos`; segments
//! wholly below every group's position are deleted. A byte budget bounds the disk used; past it
//! appends fail with a retryable [`LogError::DiskBudgetExhausted`].

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::segment::{self, ReadOutcome, SegmentCursor};
use crate::{Delivered, EventLog, LogConsumer, LogError, LogStats, Record, Topic};

/// How hard an append pushes its bytes to stable storage before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` before acknowledging: survives process crash and power loss.
    Fsync,
    /// Written to the OS page cache only: survives a process crash (`kill -9`), not power loss.
    OsBuffer,
}

#[derive(Clone, Debug)]
pub struct EmbeddedLogConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub sync: SyncMode,
    /// Appends waiting for the writer beyond which callers get `Backpressure`.
    pub queue_capacity: usize,
    /// How often an idle consumer re-checks the files (covers writers in another process).
    pub poll_interval: Duration,
}

impl EmbeddedLogConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EmbeddedLogConfig {
            dir: dir.into(),
            segment_bytes: 64 * 1024 * 1024,
            max_bytes: 10 * 1024 * 1024 * 1024,
            sync: SyncMode::Fsync,
            queue_capacity: 4096,
            poll_interval: Duration::from_millis(50),
        }
    }
}

struct AppendRequest {
    records: Vec<Record>,
    bytes: u64,
    done: oneshot::Sender<Result<(), LogError>>,
}

enum WriterMessage {
    Append(AppendRequest),
    Close(oneshot::Sender<()>),
}

struct Shared {
    config: EmbeddedLogConfig,
    /// Random id created with the log directory (`LOG_ID`).
    log_id: String,
    /// Next offset to be assigned once the pending batch is durable (the high watermark).
    watermark: watch::Sender<u64>,
    bytes_on_disk: AtomicU64,
    closed: AtomicBool,
    unavailable: Mutex<Option<String>>,
}

/// The embedded, file-backed [`EventLog`].
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    sender: mpsc::Sender<WriterMessage>,
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log, recovering the tail of the last segment.
    pub fn open(config: EmbeddedLogConfig) -> Result<EmbeddedLog, LogError> {
        fs::create_dir_all(config.dir.join("consumers"))?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(config.dir.join("LOCK"))?;
        if lock.try_lock().is_err() {
            return Err(LogError::InUse(config.dir.display().to_string()));
        }
        let mut bases = segment::list_segments(&config.dir)?;
        if bases.is_empty() {
            let first = committed_floor(&config.dir)?.unwrap_or(0);
            File::create(segment::segment_path(&config.dir, first))?;
            segment::sync_dir(&config.dir)?;
            bases.push(first);
        }
        let active_base = *bases.last().expect("one segment");
        let (next_offset, active_len) = segment::recover_tail(&config.dir, active_base)?;
        let bytes_on_disk = dir_bytes(&config.dir)?;
        let log_id = load_or_create_id(&config.dir)?;
        let active = OpenOptions::new().append(true).open(segment::segment_path(&config.dir, active_base))?;
        let (watermark, _) = watch::channel(next_offset);
        let shared = Arc::new(Shared {
            config: config.clone(),
            log_id,
            watermark,
            bytes_on_disk: AtomicU64::new(bytes_on_disk),
            closed: AtomicBool::new(false),
            unavailable: Mutex::new(None),
        });
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let writer = Writer {
            shared: shared.clone(),
            active,
            active_base,
            active_len,
            next_offset,
            _lock: lock,
        };
        std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || writer.run(receiver))?;
        tracing::info!(dir = %config.dir.display(), next_offset, bytes_on_disk, "embedded event log opened");
        Ok(EmbeddedLog { shared, sender })
    }
}

fn load_or_create_id(dir: &Path) -> Result<String, LogError> {
    let path = dir.join("LOG_ID");
    match fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let tmp = dir.join("LOG_ID.tmp");
            fs::write(&tmp, &id)?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &path)?;
            segment::sync_dir(dir)?;
            Ok(id)
        }
    }
}

/// Lowest committed position over all groups, if any group exists.
fn committed_floor(dir: &Path) -> Result<Option<u64>, LogError> {
    let mut floor: Option<u64> = None;
    for entry in fs::read_dir(dir.join("consumers"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pos") {
            if let Some(pos) = read_position(&path)? {
                floor = Some(floor.map_or(pos, |f| f.min(pos)));
            }
        }
    }
    Ok(floor)
}

fn read_position(path: &Path) -> Result<Option<u64>, LogError> {
    match fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u64>().map(Some).map_err(|_| LogError::Corrupt {
            segment: path.display().to_string(),
            position: 0,
            reason: "consumer position is not a number".into(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn dir_bytes(dir: &Path) -> Result<u64, LogError> {
    let mut total = 0;
    for base in segment::list_segments(dir)? {
        total += fs::metadata(segment::segment_path(dir, base)).map(|m| m.len()).unwrap_or(0);
    }
    Ok(total)
}

struct Writer {
    shared: Arc<Shared>,
    active: File,
    active_base: u64,
    active_len: u64,
    next_offset: u64,
    _lock: File,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<WriterMessage>) {
        let mut batch: Vec<AppendRequest> = Vec::new();
        while let Some(first) = receiver.blocking_recv() {
            let mut close = None;
            match first {
                WriterMessage::Append(req) => batch.push(req),
                WriterMessage::Close(done) => close = Some(done),
            }
            let mut batch_bytes: u64 = batch.iter().map(|r| r.bytes).sum();
            while close.is_none() && batch_bytes < 4 * 1024 * 1024 {
                match receiver.try_recv() {
                    Ok(WriterMessage::Append(req)) => {
                        batch_bytes += req.bytes;
                        batch.push(req);
                    }
                    Ok(WriterMessage::Close(done)) => close = Some(done),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write_batch(&mut batch);
            }
            if let Some(done) = close {
                receiver.close();
                while let Some(message) = receiver.blocking_recv() {
                    if let WriterMessage::Append(req) = message {
                        batch.push(req);
                    }
                }
                if !batch.is_empty() {
                    self.write_batch(&mut batch);
                }
                // Release the directory lock before reporting the close, so a reopen succeeds.
                drop(self);
                let _ = done.send(());
                tracing::debug!("event log writer stopped");
                return;
            }
        }
        tracing::debug!("event log writer stopped");
    }

    fn write_batch(&mut self, batch: &mut Vec<AppendRequest>) {
        let start_len = self.active_len;
        let start_offset = self.next_offset;
        let mut buffer = Vec::with_capacity(batch.iter().map(|r| r.bytes as usize).sum());
        let mut accepted = Vec::with_capacity(batch.len());
        let mut result: Result<(), LogError> = Ok(());
        let mut refused_any = false;
        for req in batch.drain(..) {
            if let Err(err) = self.check_budget(req.bytes + buffer.len() as u64) {
                refused_any = true;
                let _ = req.done.send(Err(err));
                continue;
            }
            for record in &req.records {
                segment::encode(record, self.next_offset, &mut buffer);
                self.next_offset += 1;
            }
            accepted.push(req.done);
            if self.active_len + buffer.len() as u64 >= self.shared.config.segment_bytes {
                result = self.flush(&mut buffer).and_then(|()| self.rotate());
                if result.is_err() {
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.flush(&mut buffer);
        }
        match result {
            Ok(()) => {
                if !refused_any {
                    *self.shared.unavailable.lock() = None;
                }
                self.shared.watermark.send_replace(self.next_offset);
                for done in accepted {
                    let _ = done.send(Ok(()));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "event log write failed; batch not acknowledged");
                *self.shared.unavailable.lock() = Some(err.to_string());
                if self.active_base <= start_offset {
                    let _ = self.active.set_len(start_len);
                    self.active_len = start_len;
                    self.next_offset = start_offset;
                } else {
                    // The failure happened after a rotation; records already made durable in the
                    // previous segment may be redelivered (at-least-once, deduped downstream).
                    self.shared.watermark.send_replace(self.next_offset);
                }
                let message = err.to_string();
                for done in accepted {
                    let _ = done.send(Err(LogError::Backend { message: message.clone(), retryable: true }));
                }
            }
        }
    }
}

/// Headroom under the disk budget below which the log reports itself unavailable (5 % of the
/// budget, at most 64 MiB), while appends that still fit go on being accepted.
fn budget_reserve(limit: u64) -> u64 {
    (limit / 20).min(64 * 1024 * 1024)
}

impl Writer {
    fn check_budget(&mut self, incoming: u64) -> Result<(), LogError> {
        let limit = self.shared.config.max_bytes;
        let mut used = self.shared.bytes_on_disk.load(Ordering::Relaxed);
        if used + incoming > limit {
            used = dir_bytes(&self.shared.config.dir)?;
            self.shared.bytes_on_disk.store(used, Ordering::Relaxed);
        }
        if used + incoming > limit {
            *self.shared.unavailable.lock() = Some(format!("disk budget exhausted: {used} of {limit} bytes"));
            return Err(LogError::DiskBudgetExhausted { used, limit });
        }
        Ok(())
    }

    fn flush(&mut self, buffer: &mut Vec<u8>) -> Result<(), LogError> {
        if buffer.is_empty() {
            return Ok(());
        }
        self.active.write_all(buffer)?;
        if self.shared.config.sync == SyncMode::Fsync {
            self.active.sync_data()?;
        }
        self.active_len += buffer.len() as u64;
        self.shared.bytes_on_disk.fetch_add(buffer.len() as u64, Ordering::Relaxed);
        buffer.clear();
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let path = segment::segment_path(&self.shared.config.dir, self.next_offset);
        let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        segment::sync_dir(&self.shared.config.dir)?;
        // The watermark may only advance past the sealed segment once its successor exists, so
        // readers that see the new file know the old one is complete.
        self.active = file;
        self.active_base = self.next_offset;
        self.active_len = 0;
        tracing::debug!(segment = %path.display(), "event log segment rotated");
        Ok(())
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, records: Vec<Record>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        let mut bytes = 0u64;
        for record in &records {
            let size = segment::encoded_len(record);
            if record.payload.len() > segment::MAX_RECORD_BYTES || record.key.len() > u16::MAX as usize {
                return Err(LogError::RecordTooLarge { size, limit: segment::MAX_RECORD_BYTES });
            }
            bytes += size as u64;
        }
        let (done, wait) = oneshot::channel();
        let request = WriterMessage::Append(AppendRequest { records, bytes, done });
        match self.sender.try_send(request) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(LogError::Backpressure { queued: self.shared.config.queue_capacity })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(LogError::Closed),
        }
        wait.await.map_err(|_| LogError::Closed)?
    }

    async fn subscribe(&self, group: &str, topics: &[Topic]) -> Result<Box<dyn LogConsumer>, LogError> {
        if group.is_empty() || !group.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(LogError::Backend { message: format!("invalid consumer group name {group:?}"), retryable: false });
        }
        let consumer = EmbeddedConsumer::open(self.shared.clone(), group, topics)?;
        Ok(Box::new(consumer))
    }

    fn stats(&self) -> LogStats {
        let bytes_on_disk = self.shared.bytes_on_disk.load(Ordering::Relaxed);
        let limit = self.shared.config.max_bytes;
        // Not ready before the budget refuses: a nearly full log would take small beacons and
        // refuse larger ones, and readiness must not flip with every request's size.
        let nearly_full = bytes_on_disk.saturating_add(budget_reserve(limit)) > limit;
        LogStats {
            next_offset: *self.shared.watermark.borrow(),
            bytes_on_disk,
            queued_appends: self.sender.max_capacity() - self.sender.capacity(),
            unavailable: self.shared.unavailable.lock().clone().or_else(|| {
                nearly_full.then(|| format!("disk budget nearly exhausted: {bytes_on_disk} of {limit} bytes used; consumers must catch up or the budget grow"))
            }),
        }
    }

    async fn shutdown(&self) -> Result<(), LogError> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        if self.sender.send(WriterMessage::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
        tracing::info!("embedded event log closed");
        Ok(())
    }
}

/// A consumer group's reader over the embedded log.
struct EmbeddedConsumer {
    shared: Arc<Shared>,
    group_file: PathBuf,
    topics: Vec<Topic>,
    /// Next offset this consumer will deliver.
    position: u64,
    committed: u64,
    cursor: Option<SegmentCursor>,
    watermark: watch::Receiver<u64>,
}

impl EmbeddedConsumer {
    fn open(shared: Arc<Shared>, group: &str, topics: &[Topic]) -> Result<EmbeddedConsumer, LogError> {
        let group_file = shared.config.dir.join("consumers").join(format!("{group}.pos"));
        let committed = match read_position(&group_file)? {
            Some(pos) => pos,
            None => {
                let earliest = segment::list_segments(&shared.config.dir)?.first().copied().unwrap_or(0);
                write_position(&group_file, earliest)?;
                earliest
            }
        };
        let watermark = shared.watermark.subscribe();
        Ok(EmbeddedConsumer {
            shared,
            group_file,
            topics: topics.to_vec(),
            position: committed,
            committed,
            cursor: None,
            watermark,
        })
    }

    /// Positions the cursor on the segment holding `self.position`, skipping earlier records.
    fn seek(&mut self) -> Result<(), LogError> {
        let dir = &self.shared.config.dir;
        let bases = segment::list_segments(dir)?;
        let Some(&first) = bases.first() else { return Ok(()) };
        if self.position < first {
            tracing::warn!(group = %self.group_file.display(), position = self.position, first, "consumer position was reclaimed; skipping ahead");
            self.position = first;
        }
        let base = bases.iter().rev().find(|&&b| b <= self.position).copied().unwrap_or(first);
        let mut cursor = SegmentCursor::open(dir, base)?;
        let mut offset = base;
        while offset < self.position {
            match cursor.read_next()? {
                ReadOutcome::Record(record) => offset = record.offset + 1,
                ReadOutcome::End => break,
            }
        }
        self.cursor = Some(cursor);
        Ok(())
    }

    fn read_available(&mut self, max_records: usize, out: &mut Vec<Delivered>) -> Result<(), LogError> {
        if self.cursor.is_none() {
            self.seek()?;
        }
        while out.len() < max_records {
            let Some(cursor) = self.cursor.as_mut() else { return Ok(()) };
            match cursor.read_next()? {
                ReadOutcome::Record(record) => {
                    if record.offset < self.position {
                        continue;
                    }
                    self.position = record.offset + 1;
                    if let Some(topic) = record.topic.filter(|t| self.topics.contains(t)) {
                        out.push(Delivered { topic, partition: 0, offset: record.offset, key: record.key, payload: record.payload });
                    }
                }
                ReadOutcome::End => {
                    // Move on only if a later segment exists: the writer creates it after the
                    // previous one is completely written, so this one is sealed.
                    let next_base = segment::list_segments(&self.shared.config.dir)?
                        .into_iter()
                        .find(|&b| b > cursor.base);
                    match next_base {
                        Some(base) => {
                            self.position = self.position.max(base);
                            self.cursor = Some(SegmentCursor::open(&self.shared.config.dir, base)?);
                        }
                        None => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes segments every group has moved past (never the newest segment).
    fn reclaim(&self) -> Result<(), LogError> {
        let dir = &self.shared.config.dir;
        let Some(floor) = committed_floor(dir)? else { return Ok(()) };
        let bases = segment::list_segments(dir)?;
        for pair in bases.windows(2) {
            let (base, next) = (pair[0], pair[1]);
            if next <= floor {
                let path = segment::segment_path(dir, base);
                let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path)?;
                let _ = self.shared.bytes_on_disk.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(len)));
                tracing::debug!(segment = %path.display(), "reclaimed consumed event log segment");
            }
        }
        Ok(())
    }
}

fn write_position(path: &Path, position: u64) -> Result<(), LogError> {
    let tmp = path.with_extension("pos.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(position.to_string().as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        segment::sync_dir(parent)?;
    }
    Ok(())
}

#[async_trait]
impl LogConsumer for EmbeddedConsumer {
    async fn poll(&mut self, max_records: usize, max_wait: Duration) -> Result<Vec<Delivered>, LogError> {
        let deadline = Instant::now() + max_wait;
        let mut out = Vec::new();
        loop {
            self.watermark.borrow_and_update();
            self.read_available(max_records.max(1), &mut out)?;
            if !out.is_empty() {
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            let nap = (deadline - now).min(self.shared.config.poll_interval);
            let _ = tokio::time::timeout(nap, self.watermark.changed()).await;
        }
    }

    async fn commit(&mut self, delivered: &[Delivered]) -> Result<(), LogError> {
        let Some(last) = delivered.iter().map(|d| d.offset).max() else { return Ok(()) };
        let position = (last + 1).max(self.committed);
        if position == self.committed {
            return Ok(());
        }
        write_position(&self.group_file, position)?;
        self.committed = position;
        self.reclaim()
    }

    fn lag(&self) -> Option<u64> {
        Some(self.watermark.borrow().saturating_sub(self.committed))
    }

    fn source(&self) -> &str {
        &self.shared.log_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, LogHarness};
    use std::sync::Arc as StdArc;

    struct EmbeddedHarness {
        dir: tempfile::TempDir,
        config: fn(&Path) -> EmbeddedLogConfig,
    }

    impl EmbeddedHarness {
        fn new() -> Self {
            EmbeddedHarness { dir: tempfile::tempdir().unwrap(), config: |d| EmbeddedLogConfig::new(d) }
        }
        fn small_segments() -> Self {
            EmbeddedHarness {
                dir: tempfile::tempdir().unwrap(),
                config: |d| EmbeddedLogConfig { segment_bytes: 512, ..EmbeddedLogConfig::new(d) },
            }
        }
    }

    #[async_trait]
    impl LogHarness for EmbeddedHarness {
        async fn open(&self) -> StdArc<dyn EventLog> {
            StdArc::new(EmbeddedLog::open((self.config)(self.dir.path())).unwrap())
        }
    }

    crate::eventlog_conformance_suite!(EmbeddedHarness::new());

    mod small_segments {
        use super::*;
        crate::eventlog_conformance_suite!(EmbeddedHarness::small_segments());
    }

    fn rec(payload: String) -> Record {
        Record::new(Topic::Events, bytes::Bytes::from_static(b"k"), payload)
    }

    #[tokio::test]
    async fn consumed_segments_are_reclaimed() {
        let harness = EmbeddedHarness::small_segments();
        let log = harness.open().await;
        for i in 0..50 {
            log.append(vec![rec(format!("payload-{i:04}-{}", "x".repeat(40)))]).await.unwrap();
        }
        let before = segment::list_segments(harness.dir.path()).unwrap().len();
        assert!(before > 3, "expected several segments, got {before}");
        let mut consumer = log.subscribe("g", &[Topic::Events]).await.unwrap();
        let got = conformance::poll_until(consumer.as_mut(), 50).await;
        consumer.commit(&got).await.unwrap();
        let after = segment::list_segments(harness.dir.path()).unwrap().len();
        assert!(after < before && after >= 1, "before {before}, after {after}");
        assert_eq!(consumer.lag(), Some(0));
        log.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn disk_budget_is_enforced_with_a_retryable_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedLogConfig { max_bytes: 300, ..EmbeddedLogConfig::new(dir.path()) }).unwrap();
        let mut last = Ok(());
        for i in 0..20 {
            last = log.append(vec![rec(format!("{i}-{}", "y".repeat(40)))]).await;
            if last.is_err() {
                break;
            }
        }
        let err = last.expect_err("budget must eventually refuse");
        assert!(matches!(err, LogError::DiskBudgetExhausted { .. }), "{err}");
        assert!(err.is_retryable());
        assert!(log.stats().unavailable.is_some());
        log.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_nearly_full_budget_is_unavailable_even_while_small_appends_fit() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedLogConfig { max_bytes: 10_000, ..EmbeddedLogConfig::new(dir.path()) }).unwrap();
        assert!(log.stats().unavailable.is_none());
        let mut refused = false;
        for i in 0..400 {
            if log.append(vec![rec(format!("{i}-{}", "y".repeat(60)))]).await.is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "the budget refuses at last");
        let small = log.append(vec![rec("z".into())]).await;
        assert!(small.is_ok(), "a record that fits is still taken: {small:?}");
        let reason = log.stats().unavailable.expect("still unavailable after a small append succeeded");
        assert!(reason.contains("disk budget nearly exhausted"), "{reason}");
        log.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn second_process_is_refused_while_the_first_holds_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let first = EmbeddedLog::open(EmbeddedLogConfig::new(dir.path())).unwrap();
        let second = EmbeddedLog::open(EmbeddedLogConfig::new(dir.path()));
        assert!(matches!(second, Err(LogError::InUse(_))));
        first.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn appends_after_shutdown_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedLogConfig::new(dir.path())).unwrap();
        log.shutdown().await.unwrap();
        assert!(matches!(log.append(vec![rec("x".into())]).await, Err(LogError::Closed)));
    }

    #[tokio::test]
    async fn oversized_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(EmbeddedLogConfig::new(dir.path())).unwrap();
        let huge = "z".repeat(segment::MAX_RECORD_BYTES + 1);
        assert!(matches!(log.append(vec![rec(huge)]).await, Err(LogError::RecordTooLarge { .. })));
        log.shutdown().await.unwrap();
    }
}
