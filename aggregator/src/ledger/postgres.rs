//! The ledger on PostgreSQL, shared by several aggregator processes (docs/scaling.md).
//!
//! The tables are SQLite's `ledger_*` tables with the same columns (made by the store's
//! migration 3, [`crate::store::PG_SCHEMA_VERSION`]), plus `ledger_head`: one row
//! holding the `seq` the next fact takes — the ledger's change sequence. Writers are
//! serialized by the transaction-scoped advisory lock [`LEDGER_LOCK`]: a writing
//! transaction takes it, reads the head, catches its in-memory index up to it, checks its
//! input, writes its facts at the next `seq`s and commits them with the new head. A
//! reader (a process about to decide) reads the head — one indexed one-row query — and
//! reads the facts between its own last `seq` and the head only when it moved.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Statement};

use super::LedgerError;
use super::store::{
    Cols, Fact, FactSink, FactSource, Lookup, Scan, Select, SharedLedger, Table, TokenCounts, Val,
};
use crate::store::StoreError;

/// The advisory lock serializing the ledger's writers across processes (held to the end
/// of each writing transaction). Distinct from the audit log's locks: a process never
/// holds it while it waits for those, nor the reverse (the ledger and the store use
/// different connections, and a ledger transaction commits before its audit events are
/// appended).
///
/// ```
/// assert_eq!(confiance_aggregator::ledger::LEDGER_LOCK.to_be_bytes(), *b"confledg");
/// ```
pub const LEDGER_LOCK: i64 = 0x636f_6e66_6c65_6467;

fn pg(e: postgres::Error) -> LedgerError {
    LedgerError::Shared(StoreError::from(e))
}

struct Inner {
    client: Client,
    /// Open transactions: 0 none, 1 the outermost, more: savepoints in it.
    depth: usize,
    /// The reads of a lazily loaded ledger, prepared once per connection (a subject's
    /// load is eight of them: parsing and planning each every time doubled its round trips).
    prepared: HashMap<&'static str, Statement>,
}

impl Inner {
    /// `sql` prepared on this connection (once).
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, LedgerError> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql).map_err(pg)?;
        self.prepared.insert(sql, st.clone());
        Ok(st)
    }
}

/// The ledger's facts and token counts in PostgreSQL. One connection behind a mutex.
pub(super) struct PgLedger {
    inner: Mutex<Inner>,
}

impl PgLedger {
    /// Connects to `url` and migrates the schema (the store's migrations, which make the
    /// ledger's tables too; a newer schema is refused).
    pub(super) fn connect(url: &str) -> Result<Self, LedgerError> {
        let config: Config = url.parse().map_err(|e| LedgerError::Shared(StoreError::Postgres(e)))?;
        let mut client = config.connect(NoTls).map_err(pg)?;
        crate::store::migrate_postgres(&mut client)?;
        Ok(Self { inner: Mutex::new(Inner { client, depth: 0, prepared: HashMap::new() }) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn params<'a>(vals: &'a [Val<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    vals.iter()
        .map(|v| -> &(dyn ToSql + Sync) {
            match v {
                Val::Int(i) => i,
                Val::Bytes(b) => b,
                Val::Text(t) => t,
                Val::OptBytes(o) => o,
            }
        })
        .collect()
}

fn wrong_type<E>(_: E) -> LedgerError {
    LedgerError::Corrupt("a column of the wrong type")
}

impl Cols for postgres::Row {
    fn int(&self, i: usize) -> Result<i64, LedgerError> {
        self.try_get(i).map_err(wrong_type)
    }
    fn bytes(&self, i: usize) -> Result<&[u8], LedgerError> {
        self.try_get(i).map_err(wrong_type)
    }
    fn text(&self, i: usize) -> Result<&str, LedgerError> {
        self.try_get(i).map_err(wrong_type)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<&[u8]>, LedgerError> {
        self.try_get(i).map_err(wrong_type)
    }
}

impl FactSink for PgLedger {
    fn put(&self, fact: &Fact<'_>) -> Result<(), LedgerError> {
        let (sql, vals) = fact.insert();
        let params = params(&vals);
        let mut g = self.lock();
        if g.depth > 0 {
            g.client.execute(sql, &params).map_err(pg)?;
            return Ok(());
        }
        // A write outside `Ledger::atomically`: its own transaction under the lock, and
        // refused when another process wrote since the index this fact was checked
        // against (its `seq` is then not the head).
        let mut tx = g.client.transaction().map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK]).map_err(pg)?;
        let head: i64 = tx.query_one("SELECT next_seq FROM ledger_head", &[]).map_err(pg)?.get(0);
        if head != fact.seq() {
            return Err(LedgerError::Shared(StoreError::Conflict));
        }
        tx.execute(sql, &params).map_err(pg)?;
        tx.execute("UPDATE ledger_head SET next_seq = $1", &[&(head + 1)]).map_err(pg)?;
        tx.commit().map_err(pg)
    }
}

impl FactSource for PgLedger {
    fn each(
        &self,
        table: Table,
        sel: Select<'_>,
        f: &mut dyn FnMut(&dyn Cols) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        if !sel.reads(table) {
            return Ok(());
        }
        let mut g = self.lock();
        let rows = match sel {
            Select::Seqs(from, to) => g.client.query(table.select(), &[&from, &to]),
            Select::Subject(subject, to) => {
                let st = g.prepared(table.select_subject())?;
                g.client.query(&st, &[&subject, &to])
            }
            // The one-subject read, for an array of subjects (each `= $1` compares the subject).
            Select::Subjects(subjects, to) => {
                let sql = table.select_subject().replace("= $1", "= ANY($1)");
                g.client.query(&sql, &[&subjects, &to])
            }
            Select::Partitions(to) => g.client.query(table.select(), &[&0i64, &to]),
            Select::Key(key, to) => {
                let st = g.prepared(table.select_key())?;
                g.client.query(&st, &[&key, &to])
            }
        }
        .map_err(pg)?;
        drop(g);
        for r in &rows {
            f(r)?;
        }
        Ok(())
    }

    fn subject_of(&self, lookup: Lookup, key: &[u8], to: i64) -> Result<Option<Vec<u8>>, LedgerError> {
        let mut g = self.lock();
        let st = g.prepared(lookup.sql())?;
        let row = g.client.query_opt(&st, &[&key, &to]).map_err(pg)?;
        row.map(|r| r.try_get::<_, Vec<u8>>(0).map_err(wrong_type)).transpose()
    }

    fn subjects_of_recipient(
        &self,
        recipient: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Vec<u8>>, LedgerError> {
        let mut g = self.lock();
        let st = g.prepared(super::store::SUBJECTS_OF_RECIPIENT)?;
        let rows = g.client.query(&st, &[&recipient, &from, &to]).map_err(pg)?;
        rows.iter().map(|r| r.try_get::<_, Vec<u8>>(0).map_err(wrong_type)).collect()
    }

    fn subjects_page(
        &self,
        scan: Scan<'_>,
        after: &[u8],
        limit: usize,
        to: i64,
    ) -> Result<Vec<Vec<u8>>, LedgerError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut g = self.lock();
        let st = g.prepared(scan.pg_sql())?;
        let rows = match scan {
            Scan::Metrics(metrics) => g.client.query(&st, &[&after, &to, &limit, &metrics]),
            Scan::Overdue { now, known } => g.client.query(&st, &[&after, &to, &limit, &now, &known]),
            Scan::Disclosures { from, to: until } => {
                g.client.query(&st, &[&after, &to, &limit, &from, &until])
            }
            Scan::All => g.client.query(&st, &[&after, &to, &limit]),
        }
        .map_err(pg)?;
        rows.iter().map(|r| r.try_get::<_, Vec<u8>>(0).map_err(wrong_type)).collect()
    }

    fn receipt_count(&self) -> Result<u64, LedgerError> {
        let n: i64 =
            self.lock().client.query_one("SELECT count(*) FROM ledger_receipt", &[]).map_err(pg)?.get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn each_row(
        &self,
        sql: &str,
        to: i64,
        f: &mut dyn FnMut(&dyn Cols) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        // Streamed (a portal read row by row), under the connection's lock.
        let mut g = self.lock();
        let mut rows = g.client.query_raw(sql, [&to]).map_err(pg)?;
        while let Some(r) = rows.next().map_err(pg)? {
            f(&r)?;
        }
        Ok(())
    }
}

impl TokenCounts for PgLedger {
    fn create_token_tables(&self) -> Result<(), LedgerError> {
        Ok(())
    }

    fn issued_before(&self, device: &[u8], scope: &[u8]) -> Result<u32, LedgerError> {
        let row = self
            .lock()
            .client
            .query_opt("SELECT issued FROM token_issued WHERE device = $1 AND scope = $2", &[&device, &scope])
            .map_err(pg)?;
        Ok(row.map_or(0, |r| u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX)))
    }

    fn count_issued(
        &self,
        device: &[u8],
        scope: &[u8],
        period: i64,
        before: u32,
        n: u32,
    ) -> Result<(), LedgerError> {
        let mut g = self.lock();
        let after = i64::from(before) + i64::from(n);
        let changed = g
            .client
            .execute(
                "INSERT INTO token_issued (device, scope, period, issued) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (device, scope) DO UPDATE SET issued = EXCLUDED.issued
                 WHERE token_issued.issued = $5",
                &[&device, &scope, &period, &after, &i64::from(before)],
            )
            .map_err(pg)?;
        if changed != 1 {
            return Err(LedgerError::Shared(StoreError::Conflict));
        }
        g.client
            .execute(
                "INSERT INTO token_scope_issued (scope, period, issued, devices) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (scope) DO UPDATE SET issued = token_scope_issued.issued + EXCLUDED.issued,
                 devices = token_scope_issued.devices + $4",
                &[&scope, &period, &i64::from(n), &i64::from(before == 0)],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn first_period(&self) -> Result<Option<i64>, LedgerError> {
        Ok(self
            .lock()
            .client
            .query_one("SELECT MIN(period) FROM token_scope_issued", &[])
            .map_err(pg)?
            .get(0))
    }

    fn scope_counts_before(&self, open: i64) -> Result<Vec<(Vec<u8>, i64, i64)>, LedgerError> {
        let rows = self
            .lock()
            .client
            .query(
                "SELECT scope, issued, devices FROM token_scope_issued WHERE period < $1 ORDER BY scope",
                &[&open],
            )
            .map_err(pg)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    fn forget_before(&self, open: i64) -> Result<(), LedgerError> {
        let mut g = self.lock();
        g.client.execute("DELETE FROM token_scope_issued WHERE period < $1", &[&open]).map_err(pg)?;
        g.client.execute("DELETE FROM token_issued WHERE period < $1", &[&open]).map_err(pg)?;
        Ok(())
    }
}

impl SharedLedger for PgLedger {
    fn sink(&self) -> &dyn FactSink {
        self
    }

    fn source(&self) -> &dyn FactSource {
        self
    }

    fn tokens(&self) -> &dyn TokenCounts {
        self
    }

    fn begin(&self) -> Result<(), LedgerError> {
        let mut g = self.lock();
        if g.depth == 0 {
            g.client.batch_execute("BEGIN").map_err(pg)?;
            if let Err(e) = g.client.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK]) {
                let _ = g.client.batch_execute("ROLLBACK");
                return Err(pg(e));
            }
        } else {
            let sp = format!("SAVEPOINT ledger_{}", g.depth);
            g.client.batch_execute(&sp).map_err(pg)?;
        }
        g.depth += 1;
        Ok(())
    }

    fn end(&self, ok: bool, next_seq: u64) -> Result<(), LedgerError> {
        let mut g = self.lock();
        if g.depth == 0 {
            return Err(LedgerError::Corrupt("no ledger transaction open"));
        }
        g.depth -= 1;
        if g.depth > 0 {
            let sp = format!("ledger_{}", g.depth);
            let sql = if ok {
                format!("RELEASE SAVEPOINT {sp}")
            } else {
                format!("ROLLBACK TO SAVEPOINT {sp}; RELEASE SAVEPOINT {sp}")
            };
            return g.client.batch_execute(&sql).map_err(pg);
        }
        if !ok {
            return g.client.batch_execute("ROLLBACK").map_err(pg);
        }
        let head = i64::try_from(next_seq).unwrap_or(i64::MAX);
        let set = g.client.execute("UPDATE ledger_head SET next_seq = $1 WHERE next_seq < $1", &[&head]);
        if let Err(e) = set {
            let _ = g.client.batch_execute("ROLLBACK");
            return Err(pg(e));
        }
        g.client.batch_execute("COMMIT").map_err(pg)
    }

    fn in_transaction(&self) -> bool {
        self.lock().depth > 0
    }

    fn head(&self) -> Result<u64, LedgerError> {
        let n: i64 =
            self.lock().client.query_one("SELECT next_seq FROM ledger_head", &[]).map_err(pg)?.get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn init(&self, digest: &[u8]) -> Result<(), LedgerError> {
        let mut g = self.lock();
        g.client
            .execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('catalogue', $1) ON CONFLICT (key) DO NOTHING",
                &[&digest],
            )
            .map_err(pg)?;
        let stored: Vec<u8> = g
            .client
            .query_one("SELECT value FROM ledger_meta WHERE key = 'catalogue'", &[])
            .map_err(pg)?
            .get(0);
        if stored == digest { Ok(()) } else { Err(LedgerError::CatalogueChanged) }
    }
}
