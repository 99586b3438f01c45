//! A commit's write-ahead log frames, written in one call.
//!
//! SQLite writes each frame of a commit to the log as two write calls, the frame's
//! 24-byte header and then its page, so a commit that changes 40 pages makes 80
//! `pwrite` calls, each taking its own trip through the kernel and touching the one or
//! two page-cache pages it lands in. This VFS wraps the default one and, for a log file
//! only, gathers writes that follow each other into one buffer and writes it in one
//! call when SQLite next syncs, reads, sizes, truncates or closes the file (or when
//! [`MAX_WAITING`] bytes wait). Every other file is the default VFS's own, untouched.
//!
//! It is correct only where a commit's frames never wait in the buffer past the commit
//! itself, and [`open`] and [`holds`] keep the writer's connection so:
//! - `synchronous = FULL` (or `EXTRA`): SQLite syncs the log at every commit, after its
//!   last frame and before it publishes the commit in the shared WAL index, so the
//!   buffer is written before any reader can look for a frame in it. With `NORMAL` a
//!   commit does not sync, so the writer then opens its connection with the default
//!   VFS ([`usable`]).
//! - `cache_spill = OFF`: SQLite writes no page to the log before the commit that holds
//!   it. A spilled page is written without a sync; were its transaction then rolled
//!   back, the frame would still wait here after the write lock was released, and
//!   later overwrite what another connection committed at the same place in the log.
//!   The writer's transactions are batches of bounded size (as are retention's
//!   deletes), so their pages fit in memory.
//! - powersafe overwrite, SQLite's default (a `file:` path's `psow=0` turns it off):
//!   without it SQLite pads a commit past its sync point, and the padding would wait
//!   here unsynced.
//!
//! Every write error surfaces at the flush that the commit's own sync makes, before
//! the commit is published: the commit fails there, as it would have at the write.

// The VFS is SQLite's C interface: raw pointers handed over by SQLite, memory SQLite
// allocates for each open file. Nothing else in this crate uses `unsafe`.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The VFS's name, as `sqlite3_open_v2` takes it.
pub const NAME: &CStr = c"button-wal-gather";

/// A flush is forced before more than this would wait: the largest write the default
/// VFS makes in one call (it keeps only the low 17 bits of a write's length). A large
/// commit (a prune's) goes in pieces this size, about 31 frames of 4 KiB pages each.
pub const MAX_WAITING: usize = 0x1_ffff;

/// Whether the writer's connection may gather its log writes, for its `synchronous`
/// setting (see the module's note); registers the VFS the first time.
pub fn usable(synchronous_full: bool) -> bool {
    synchronous_full && register()
}

/// Opens the writer's connection through this VFS, with no page written to the log
/// before its commit (see the module's note).
pub fn open(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let db =
        rusqlite::Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), NAME)?;
    db.pragma_update(None, "cache_spill", false)?;
    Ok(db)
}

/// Whether a connection [`open`] made still has the settings gathering needs (see the
/// module's note), once its other pragmas are set.
pub fn holds(db: &rusqlite::Connection) -> rusqlite::Result<bool> {
    let synchronous: i64 = db.pragma_query_value(None, "synchronous", |r| r.get(0))?;
    let spill: i64 = db.pragma_query_value(None, "cache_spill", |r| r.get(0))?;
    let mut powersafe: c_int = -1;
    // SAFETY: the handle is the open connection's; with -1 this file control only
    // reads the flag into the int it is given.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            db.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_POWERSAFE_OVERWRITE,
            (&raw mut powersafe).cast(),
        )
    };
    Ok(synchronous >= 2 && spill == 0 && rc == ffi::SQLITE_OK && powersafe == 1)
}

/// A log file opened through this VFS. SQLite allocates `szOsFile` bytes for it and
/// passes the pointer to every method; the default VFS's own file follows at
/// [`INNER_AT`].
#[repr(C)]
struct Gathered {
    /// Must be first: SQLite reads the methods through it.
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// Bytes written but not yet passed on, to be written at `at`.
    waiting: Vec<u8>,
    at: i64,
}

/// Where the default VFS's file starts within ours (aligned as SQLite aligns its
/// allocations, to 8 bytes).
const INNER_AT: usize = size_of::<Gathered>().next_multiple_of(8);

/// The default VFS this one wraps, once registered.
static INNER: OnceLock<Option<usize>> = OnceLock::new();

/// Registers the VFS (once per process); false if SQLite has no default VFS to wrap
/// or refused the registration.
fn register() -> bool {
    const { assert!(align_of::<Gathered>() <= 8) };
    INNER
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find initialises SQLite if needed and returns the
            // default VFS, which SQLite keeps for the life of the process. The copy
            // made here is leaked, so it too lives as long as SQLite may use it.
            unsafe {
                let inner = ffi::sqlite3_vfs_find(ptr::null());
                if inner.is_null() || (*inner).xOpen.is_none() {
                    return None;
                }
                let mut vfs = *inner;
                // The default VFS's own methods, with its own `pAppData`, stay as they
                // are: only opening a file and the size of one differ.
                vfs.pNext = ptr::null_mut();
                vfs.zName = NAME.as_ptr();
                vfs.szOsFile = c_int::try_from(INNER_AT)
                    .ok()?
                    .checked_add((*inner).szOsFile)?;
                vfs.xOpen = Some(open_file);
                let ours = Box::leak(Box::new(vfs));
                (ffi::sqlite3_vfs_register(ours, 0) == ffi::SQLITE_OK).then_some(inner as usize)
            }
        })
        .is_some()
}

fn inner_vfs() -> *mut ffi::sqlite3_vfs {
    INNER
        .get()
        .copied()
        .flatten()
        .expect("a file is opened through the VFS only after it registered") as *mut _
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// Opens a file: a log file wrapped, any other the default VFS's own in the same memory.
unsafe extern "C" fn open_file(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let inner_vfs = inner_vfs();
    // SAFETY: SQLite hands over `file` with our `szOsFile` bytes, which hold the
    // default VFS's file at offset 0 (any other file) or at INNER_AT (a log file).
    unsafe {
        let open_inner = (*inner_vfs).xOpen.expect("checked at registration");
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return open_inner(inner_vfs, name, file, flags, out_flags);
        }
        let inner = file.cast::<u8>().add(INNER_AT).cast::<ffi::sqlite3_file>();
        (*inner).pMethods = ptr::null();
        let rc = open_inner(inner_vfs, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // As SQLite would for the default VFS's file alone: closed if it set its
            // methods even though it failed; ours left unset, so SQLite will not.
            if let Some(methods) = (*inner).pMethods.as_ref()
                && let Some(close) = methods.xClose
            {
                close(inner);
            }
            (*file).pMethods = ptr::null();
            return rc;
        }
        ptr::write(
            file.cast::<Gathered>(),
            Gathered {
                base: ffi::sqlite3_file { pMethods: &METHODS },
                inner,
                waiting: Vec::new(),
                at: 0,
            },
        );
        ffi::SQLITE_OK
    }
}

/// The wrapped file and the default VFS's methods for it.
///
/// # Safety
/// `file` must be a log file opened by [`open_file`], not yet closed; SQLite calls one
/// connection's file from one thread at a time.
unsafe fn parts<'a>(
    file: *mut ffi::sqlite3_file,
) -> (&'a mut Gathered, &'a ffi::sqlite3_io_methods) {
    // SAFETY: as the function's contract says; the default VFS set its methods when it
    // opened the inner file, and they are static.
    unsafe {
        let ours = &mut *file.cast::<Gathered>();
        let methods = &*(*ours.inner).pMethods;
        (ours, methods)
    }
}

/// Passes a write on to the default VFS.
///
/// # Safety
/// `amount` readable bytes at `data`, read before the call returns.
unsafe fn write_through(
    ours: &Gathered,
    methods: &ffi::sqlite3_io_methods,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let write = methods.xWrite.expect("the default VFS writes");
    // SAFETY: `inner` is open; the bytes as the function's contract says.
    unsafe { write(ours.inner, data, amount, offset) }
}

/// Writes what waits, in one call.
fn flush(ours: &mut Gathered, methods: &ffi::sqlite3_io_methods) -> c_int {
    if ours.waiting.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Ok(len) = c_int::try_from(ours.waiting.len()) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: the buffer is ours and outlives the call.
    let rc = unsafe { write_through(ours, methods, ours.waiting.as_ptr().cast(), len, ours.at) };
    ours.waiting.clear();
    rc
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite passes a file we opened and `amount` readable bytes at `data`.
    let (ours, methods) = unsafe { parts(file) };
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    if len == 0 {
        return ffi::SQLITE_OK;
    }
    let follows = offset == ours.at + ours.waiting.len() as i64;
    if !follows || ours.waiting.len() + len > MAX_WAITING {
        let rc = flush(ours, methods);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if len >= MAX_WAITING {
            // SAFETY: as above: SQLite's buffer, passed straight on.
            return unsafe { write_through(ours, methods, data, amount, offset) };
        }
        ours.at = offset;
    }
    // SAFETY: SQLite's buffer of `amount` bytes, read before the call returns.
    ours.waiting
        .extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) });
    ffi::SQLITE_OK
}

/// Flushes what waits, then does what the default VFS does: for every method that
/// reads, sizes or changes the file.
macro_rules! flushed_then {
    ($name:ident, $field:ident ( $($arg:ident : $ty:ty),* )) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite passes a file we opened, and arguments valid for the
            // default VFS's method, which gets them unchanged.
            unsafe {
                let (ours, methods) = parts(file);
                let rc = flush(ours, methods);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                match methods.$field {
                    Some(method) => method(ours.inner $(, $arg)*),
                    None => ffi::SQLITE_IOERR,
                }
            }
        }
    };
}

/// Does what the default VFS does, with nothing to flush first.
macro_rules! passed_on {
    ($name:ident, $field:ident ( $($arg:ident : $ty:ty),* ), $none:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: as for `flushed_then`.
            unsafe {
                let (ours, methods) = parts(file);
                match methods.$field {
                    Some(method) => method(ours.inner $(, $arg)*),
                    None => $none,
                }
            }
        }
    };
}

flushed_then!(read, xRead(data: *mut c_void, amount: c_int, offset: i64));
flushed_then!(truncate, xTruncate(size: i64));
flushed_then!(sync, xSync(flags: c_int));
flushed_then!(file_size, xFileSize(size: *mut i64));
flushed_then!(file_control, xFileControl(op: c_int, arg: *mut c_void));
flushed_then!(fetch, xFetch(offset: i64, amount: c_int, out: *mut *mut c_void));
passed_on!(lock, xLock(level: c_int), ffi::SQLITE_OK);
passed_on!(unlock, xUnlock(level: c_int), ffi::SQLITE_OK);
passed_on!(check_reserved_lock, xCheckReservedLock(out: *mut c_int), ffi::SQLITE_IOERR);
passed_on!(sector_size, xSectorSize(), 4096);
passed_on!(device_characteristics, xDeviceCharacteristics(), 0);
passed_on!(shm_map, xShmMap(page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR);
passed_on!(shm_lock, xShmLock(offset: c_int, n: c_int, flags: c_int), ffi::SQLITE_IOERR);
passed_on!(shm_unmap, xShmUnmap(delete: c_int), ffi::SQLITE_OK);
passed_on!(unfetch, xUnfetch(offset: i64, page: *mut c_void), ffi::SQLITE_OK);

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: as for `flushed_then`.
    unsafe {
        let (ours, methods) = parts(file);
        if let Some(barrier) = methods.xShmBarrier {
            barrier(ours.inner);
        }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file it opened through us once; after this it neither
    // calls its methods nor reads its memory, so ours is dropped here.
    unsafe {
        let (ours, methods) = parts(file);
        let flushed = flush(ours, methods);
        let closed = methods
            .xClose
            .map_or(ffi::SQLITE_OK, |close| close(ours.inner));
        ptr::drop_in_place(file.cast::<Gathered>());
        (*file).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection as the writer's: through this VFS if `gathered`, else SQLite's
    /// default (as every other connection of the store).
    fn connection(path: &std::path::Path, gathered: bool) -> rusqlite::Connection {
        assert!(register());
        let db = if gathered {
            open(path)
        } else {
            rusqlite::Connection::open(path)
        }
        .unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.pragma_update(None, "synchronous", "FULL").unwrap();
        db.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        assert!(!gathered || holds(&db).unwrap());
        db
    }

    /// This thread's write calls and bytes written so far (Linux counts them per
    /// thread).
    fn writes() -> (u64, u64) {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        let field = |name: &str| -> u64 {
            io.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        (field("syscw:"), field("wchar:"))
    }

    /// One commit that changes many pages: rows spread over many leaves.
    fn commit_many_pages(db: &rusqlite::Connection, round: i64) {
        commit_rows(db, round, 200);
    }

    /// One commit of `n` rows of 300 bytes, spread over the table.
    fn commit_rows(db: &rusqlite::Connection, round: i64, n: i64) {
        let tx = db.unchecked_transaction().unwrap();
        for i in 0..n {
            tx.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                rusqlite::params![i * 1_000_000 + round, vec![round as u8; 300]],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    #[test]
    fn a_connection_without_the_settings_gathering_needs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let db = connection(&path, true);
        assert!(holds(&db).unwrap());
        db.pragma_update(None, "synchronous", "NORMAL").unwrap();
        assert!(!holds(&db).unwrap(), "synchronous = NORMAL");
        db.pragma_update(None, "synchronous", "EXTRA").unwrap();
        assert!(holds(&db).unwrap(), "synchronous = EXTRA");
        db.pragma_update(None, "cache_spill", true).unwrap();
        assert!(!holds(&db).unwrap(), "cache_spill on");
        let uri = format!("file:{}?psow=0", dir.path().join("u.db").display());
        let db = open(std::path::Path::new(&uri)).unwrap();
        db.pragma_update(None, "synchronous", "FULL").unwrap();
        assert!(!holds(&db).unwrap(), "psow=0");
    }

    /// A new store in `dir` with the table `t`, and the writer's connection to it.
    fn store(dir: &tempfile::TempDir, name: &str) -> (std::path::PathBuf, rusqlite::Connection) {
        let path = dir.path().join(name);
        let writer = connection(&path, true);
        writer
            .execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        (path, writer)
    }

    fn assert_intact(db: &rusqlite::Connection) {
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// The table's rows and bytes, as a connection reads them.
    fn contents(db: &rusqlite::Connection) -> (i64, i64) {
        db.query_row(
            "SELECT count(*), coalesce(sum(length(v)), 0) FROM t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    /// Write calls and bytes of five commits of about a hundred pages each.
    fn writes_of_commits(gathered: bool) -> (u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let db = connection(&dir.path().join("w.db"), gathered);
        db.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB); CREATE INDEX t_v ON t (v, k);",
        )
        .unwrap();
        commit_many_pages(&db, 0);
        let before = writes();
        for round in 1..=5 {
            commit_many_pages(&db, round);
        }
        let after = writes();
        (after.0 - before.0, after.1 - before.1)
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_commits_frames_are_written_in_one_call() {
        let (plain, plain_bytes) = writes_of_commits(false);
        let (gathered, bytes) = writes_of_commits(true);
        // By default two calls a frame; gathered, one call a piece of MAX_WAITING
        // bytes, plus each commit's last piece (and its log header, should the log
        // start over).
        let pieces = bytes.div_ceil(MAX_WAITING as u64) + 2 * 5;
        assert!(
            plain >= 2 * plain_bytes / 4200,
            "the default VFS: {plain} write calls, {plain_bytes} bytes"
        );
        assert!(
            gathered <= pieces,
            "gathered: {gathered} write calls, {bytes} bytes"
        );
        assert!(
            gathered * 10 <= plain,
            "{gathered} write calls against {plain}"
        );
    }

    #[test]
    fn what_one_connection_commits_another_reads_and_a_reopened_store_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = store(&dir, "r.db");
        let reader = connection(&path, false);
        for round in 0..20 {
            commit_many_pages(&writer, round);
            // Another connection, through the default VFS, sees every committed row.
            assert_eq!(
                contents(&reader),
                (200 * (round + 1), 200 * 300 * (round + 1))
            );
            // A commit larger than what may wait: written in pieces, still whole.
            if round == 10 {
                writer
                    .execute("INSERT INTO t (k, v) VALUES (-1, zeroblob(3000000))", [])
                    .unwrap();
                writer.execute("DELETE FROM t WHERE k = -1", []).unwrap();
            }
        }
        // A checkpoint on the writer (it reads its own log) and a rolled-back
        // transaction, then more commits over the log's start.
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        {
            let tx = writer.unchecked_transaction().unwrap();
            tx.execute("DELETE FROM t", []).unwrap();
            tx.rollback().unwrap();
        }
        commit_many_pages(&writer, 20);
        assert_eq!(contents(&reader), (200 * 21, 200 * 300 * 21));
        // The files alone, as a crash would leave them (the writer still open, its
        // last commits in the log only): a store opened on a copy recovers every
        // commit from the log, so each was written whole, checksums and all.
        let copy = dir.path().join("copy.db");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::copy(dir.path().join("r.db-wal"), dir.path().join("copy.db-wal")).unwrap();
        let frames = std::fs::metadata(dir.path().join("copy.db-wal"))
            .unwrap()
            .len();
        assert!(frames > 0);
        let again = connection(&copy, false);
        assert_eq!(contents(&again), (200 * 21, 200 * 300 * 21));
        assert_intact(&again);
    }

    #[test]
    fn a_rolled_back_transaction_leaves_nothing_to_overwrite_what_another_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = store(&dir, "s.db");
        commit_many_pages(&writer, 0);
        // An empty log, so that rolling back reads nothing from it.
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        // A transaction much larger than its connection's page cache, rolled back.
        // Were its pages spilled to the log before the commit, the last of them would
        // wait in the buffer past the rollback.
        writer.pragma_update(None, "cache_size", 10).unwrap();
        {
            let tx = writer.unchecked_transaction().unwrap();
            tx.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
                 INSERT INTO t (k, v) SELECT 500000000 + i, randomblob(300) FROM n",
                [],
            )
            .unwrap();
            tx.rollback().unwrap();
        }
        // Another connection commits over the same stretch of the log, then the
        // first one reads (which would flush anything still waiting over it).
        let other = connection(&path, false);
        commit_rows(&other, 1, 3000);
        let expected = (3200, 3200 * 300);
        assert_eq!(contents(&writer), expected);
        drop(writer);
        let third = connection(&path, false);
        assert_eq!(contents(&third), expected);
        assert_intact(&third);
    }
}
