//! The tables, their migrations and the statements, in one place.
//!
//! One schema (default `taskform`) holds every named state of a database:
//!
//! - `meta(key, value)`: `schema_version`.
//! - `states(name, lineage, serial, data, updated_at, updated_by)`: one row per named
//!   state; `data` is the state document, byte for byte as the file backend writes it.
//! - `journal(state, seq, record)`: the running apply's journal records (`seq` 0 is
//!   its `open` record), deleted in the transaction that writes the state.
//! - `locks(state, holder, backend_pid, acquired_at, lease_until)`: who took a
//!   state's lock, for the message another process gets, and until when its lease runs
//!   by the database's clock ([`crate::state::lease`]). The lock itself is a session
//!   advisory lock; the row stays behind when its holder did not release the lock (it
//!   died, or lost its session), which is how the next holder knows to wait.
//!
//! A database at an older schema version is migrated in one transaction under a
//! transaction advisory lock (so two first runs do not race); one at a newer version
//! is refused.

/// The schema version this taskform writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Migration `i` takes a schema from version `i` to `i + 1` (`{s}` is the quoted
/// schema).
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: states and their journals.
    "CREATE TABLE IF NOT EXISTS {s}.states (
        name text PRIMARY KEY,
        lineage text NOT NULL,
        serial bigint NOT NULL,
        data text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        updated_by text NOT NULL DEFAULT ''
     );
     CREATE TABLE IF NOT EXISTS {s}.journal (
        state text NOT NULL,
        seq bigint NOT NULL,
        record text NOT NULL,
        PRIMARY KEY (state, seq)
     );",
    // 1 -> 2: who holds each lock.
    "CREATE TABLE IF NOT EXISTS {s}.locks (
        state text PRIMARY KEY,
        holder text NOT NULL,
        backend_pid integer NOT NULL,
        acquired_at timestamptz NOT NULL DEFAULT now()
     );",
    // 2 -> 3: the holder's lease, and until when what a dead holder sent may still land.
    "ALTER TABLE {s}.locks ADD COLUMN IF NOT EXISTS lease_until timestamptz;
     ALTER TABLE {s}.locks ADD COLUMN IF NOT EXISTS drain_until timestamptz;",
];

/// The first key of every taskform advisory lock ("tfor"); the second is derived from
/// the schema and the state name ([`lock_key`]), 0 is the migration lock.
pub const LOCK_CLASS: i32 = 0x7466_6f72;

/// The second advisory-lock key of a named state.
pub fn lock_key(schema: &str, name: &str) -> i32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{schema}\0{name}").as_bytes());
    let k = i32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0x7fff_ffff;
    k.max(1)
}

/// The `locks` row of the leadership of the state `name` (a state name is printable,
/// so no state's row can be this one).
pub fn leader_row(name: &str) -> String {
    format!("{name}\u{1}leader")
}

/// The settings every session takes: the server's TCP keepalives (so that it frees
/// the lock of a holder that vanished without closing its connection within about
/// 15 + 5 * 3 seconds, instead of the kernel's two hours), and timeouts for
/// statements and idle transactions.
pub const SESSION_SETTINGS: &str = "SET tcp_keepalives_idle = 15;
    SET tcp_keepalives_interval = 5;
    SET tcp_keepalives_count = 3;
    SET statement_timeout = '60s';
    SET idle_in_transaction_session_timeout = '60s'";

/// Settings older servers do not know (`tcp_user_timeout`: PostgreSQL 12;
/// `client_connection_check_interval`: 14), each tried on its own.
pub const SESSION_OPTIONAL: &[&str] = &[
    "SET tcp_user_timeout = 30000",
    "SET client_connection_check_interval = '10s'",
];

/// Statements for one schema and one state's lock.
pub struct Sql {
    pub schema: String,
    /// Quoted, for use in statements.
    q: String,
    key: i32,
}

impl Sql {
    pub fn new(schema: &str, name: &str) -> Sql {
        Sql {
            schema: schema.to_string(),
            q: format!("\"{}\"", schema.replace('"', "\"\"")),
            key: lock_key(schema, name),
        }
    }

    /// The statements of the watchers' leadership of the state `name`: another
    /// advisory key, and its holder's row in `locks` under [`leader_row`].
    pub fn leadership(schema: &str, name: &str) -> Sql {
        Sql {
            key: lock_key(schema, &format!("{name}\0leader")),
            ..Sql::new(schema, name)
        }
    }

    fn t(&self, sql: &str) -> String {
        sql.replace("{s}", &self.q)
    }

    /// The version recorded in `meta` (an error when the schema or table is missing).
    pub fn version(&self) -> String {
        self.t("SELECT value FROM {s}.meta WHERE key = 'schema_version'")
    }

    /// Whether the schema exists.
    pub const SCHEMA_EXISTS: &str =
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)";

    pub fn create_schema(&self) -> String {
        self.t("CREATE SCHEMA IF NOT EXISTS {s}")
    }

    pub fn migration_lock(&self) -> String {
        format!("SELECT pg_catalog.pg_advisory_xact_lock({LOCK_CLASS}, 0)")
    }

    pub fn create_meta(&self) -> String {
        self.t("CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL)")
    }

    /// The statements taking version `from` to [`SCHEMA_VERSION`].
    pub fn migrations(&self, from: i64) -> Vec<String> {
        MIGRATIONS
            .iter()
            .skip(from.max(0) as usize)
            .map(|m| self.t(m))
            .collect()
    }

    pub fn set_version(&self) -> String {
        self.t(
            "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
    }

    /// `(lineage, serial, data, version, journal)`: the state named $1 and, when $3,
    /// its journal records in order; one row, all NULL but the journal when there is
    /// no state. The version is the row's `xmin` (new with every write); the document
    /// is left out (NULL) when its version is $2, the one the caller holds already.
    pub fn load_state(&self) -> String {
        self.t("SELECT s.lineage, s.serial,
                    CASE WHEN s.xmin::text = $2::text THEN NULL ELSE s.data END,
                    s.xmin::text,
                    CASE WHEN $3::bool
                         THEN ARRAY(SELECT record FROM {s}.journal WHERE state = $1 ORDER BY seq)
                    END
             FROM (SELECT 1) AS one LEFT JOIN {s}.states AS s ON s.name = $1::text")
    }

    /// `(version, serial, journal)` of the state named $1: its row's `xmin`, its serial,
    /// and whether journal records exist; no row when there is no state.
    pub fn peek_state(&self) -> String {
        self.t("SELECT s.xmin::text, s.serial,
                    EXISTS (SELECT 1 FROM {s}.journal j WHERE j.state = $1)
             FROM {s}.states s WHERE s.name = $1")
    }

    /// True when this session holds the state's advisory lock: checked inside every
    /// write, so that nothing is committed (and so nothing sent) by a session that
    /// lost it, and a connection pooler in transaction mode (which would run the
    /// statement on another server session) is caught.
    fn holds_lock(&self) -> String {
        format!(
            "EXISTS (SELECT 1 FROM pg_catalog.pg_locks
                WHERE locktype = 'advisory'
                  AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
                  AND classid = {LOCK_CLASS}::bigint::oid AND objid = {}::bigint::oid AND objsubid = 2
                  AND pid = pg_catalog.pg_backend_pid() AND granted)",
            self.key
        )
    }

    pub fn check_lock(&self) -> String {
        format!("SELECT {}", self.holds_lock())
    }

    pub fn try_lock(&self) -> String {
        format!(
            "SELECT pg_catalog.pg_try_advisory_lock({LOCK_CLASS}, {})",
            self.key
        )
    }

    pub fn unlock(&self) -> String {
        format!(
            "SELECT pg_catalog.pg_advisory_unlock({LOCK_CLASS}, {})",
            self.key
        )
    }

    /// Records who holds the lock of the state named $1 ($2: the holder as JSON), its
    /// lease of $3 seconds from the database's `now()`, and, when $4 > 0, that what a
    /// previous holder sent may land for $4 more seconds (kept for the next holder
    /// should this one stop before that).
    pub fn set_holder(&self) -> String {
        self.t(
            "INSERT INTO {s}.locks (state, holder, backend_pid, acquired_at, lease_until, drain_until)
             VALUES ($1, $2, pg_catalog.pg_backend_pid(), now(), now() + pg_catalog.make_interval(secs => $3::float8),
                     CASE WHEN $4::float8 > 0 THEN now() + pg_catalog.make_interval(secs => $4::float8) END)
             ON CONFLICT (state) DO UPDATE
             SET holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid,
                 acquired_at = EXCLUDED.acquired_at, lease_until = EXCLUDED.lease_until,
                 drain_until = EXCLUDED.drain_until",
        )
    }

    /// Renews the lease of the state named $1 by $2 seconds from the database's
    /// `now()`, if this session holds the lock; one row when it did.
    pub fn renew_lease(&self) -> String {
        self.t(&format!(
            "UPDATE {{s}}.locks SET lease_until = now() + pg_catalog.make_interval(secs => $2::float8)
             WHERE state = $1 AND backend_pid = pg_catalog.pg_backend_pid() AND {}
             RETURNING 1",
            self.holds_lock()
        ))
    }

    /// What a previous holder of the state named $1 left, read by the session that
    /// just took its lock: `(holder JSON, seconds its lease still runs (0 when over;
    /// NULL when it recorded none), the journal's records in order, seconds what an
    /// earlier holder sent may still land (NULL: nothing))`; no row when the previous
    /// holder released the lock.
    pub fn previous_holder(&self) -> String {
        self.t("SELECT holder,
                    GREATEST(0, EXTRACT(EPOCH FROM (lease_until - now())))::float8,
                    ARRAY(SELECT record FROM {s}.journal WHERE state = $1 ORDER BY seq),
                    GREATEST(0, EXTRACT(EPOCH FROM (drain_until - now())))::float8
             FROM {s}.locks WHERE state = $1")
    }

    /// Forgets this session's holder row, unless what a previous holder sent may still
    /// land (a holder stopped while it waited for that): the row then stays, so that the
    /// next holder waits too.
    pub fn clear_holder(&self) -> String {
        self.t(
            "DELETE FROM {s}.locks WHERE state = $1 AND backend_pid = pg_catalog.pg_backend_pid()
               AND (drain_until IS NULL OR drain_until <= now())",
        )
    }

    /// Who holds the lock: `(holder row if it is the holder's, holder's backend pid,
    /// its client address, its application name)`; no row when nobody holds it.
    pub fn holder(&self) -> String {
        self.t(&format!(
            "SELECT CASE WHEN h.backend_pid = l.pid THEN h.holder END,
                    l.pid, a.client_addr::text, a.application_name
             FROM pg_catalog.pg_locks l
             LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
             LEFT JOIN {{s}}.locks h ON h.state = $1
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
               AND l.classid = {LOCK_CLASS}::bigint::oid AND l.objid = {}::bigint::oid AND l.objsubid = 2
             LIMIT 1",
            self.key
        ))
    }

    /// Appends journal records ($1 state, $2 seqs, $3 records) if this session holds
    /// the lock; the row count says whether it did.
    pub fn append(&self) -> String {
        self.t(&format!(
            "INSERT INTO {{s}}.journal (state, seq, record)
             SELECT $1, t.seq, t.record FROM unnest($2::bigint[], $3::text[]) AS t(seq, record)
             WHERE {}",
            self.holds_lock()
        ))
    }

    /// In a transaction: the row of the state named $1, locked.
    pub fn state_for_update(&self) -> String {
        self.t("SELECT lineage, serial FROM {s}.states WHERE name = $1 FOR UPDATE")
    }

    /// Writes the state named $1 ($2 lineage, $3 serial, $4 data, $5 who); returns the
    /// row's new version.
    pub fn write_state(&self) -> String {
        self.t(
            "INSERT INTO {s}.states (name, lineage, serial, data, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, now(), $5)
             ON CONFLICT (name) DO UPDATE
             SET lineage = EXCLUDED.lineage, serial = EXCLUDED.serial, data = EXCLUDED.data,
                 updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
             RETURNING xmin::text",
        )
    }

    pub fn clear_journal(&self) -> String {
        self.t("DELETE FROM {s}.journal WHERE state = $1")
    }

    pub fn insert_record(&self) -> String {
        self.t("INSERT INTO {s}.journal (state, seq, record) VALUES ($1, $2, $3)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_by_schema_and_name_and_are_positive() {
        let a = lock_key("taskform", "prod");
        assert_eq!(a, lock_key("taskform", "prod"));
        assert_ne!(a, lock_key("taskform", "dev"));
        assert_ne!(a, lock_key("other", "prod"));
        assert!(a > 0);
        assert_eq!(MIGRATIONS.len() as i64, SCHEMA_VERSION);
    }
}
