/**
 * The schema of `<data dir>/neuron.db`. Give it to the SQLite layer:
 * `Sqlite.layer({ filename, migrations: NeuronMigrations })`. New migrations get the next number; a
 * migration that has run is never edited.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"

/** Every migration of the Neuron's database, by name (`NNNN_name`, run in order, each once). */
export const NeuronMigrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {
  "0001_neuron_store": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The snapshot (a projection of lifecycle_events, plus the two things events never hold: the bearer
    // token and the last heartbeat). No CHECK on `state`: the store decodes the row with Schema, and an
    // undecodable row is rebuilt from the event log.
    yield* sql`CREATE TABLE registration (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      state TEXT NOT NULL,
      version INTEGER NOT NULL,
      last_seq INTEGER NOT NULL,
      registration_id TEXT,
      bearer_token TEXT,
      axon_url TEXT,
      heartbeat_interval_s INTEGER,
      ttl_s INTEGER,
      last_heartbeat_at TEXT,
      organization_npi TEXT,
      organization_name TEXT,
      organization_type TEXT,
      endpoint_url TEXT,
      last_error TEXT,
      updated_at TEXT
    )`
    yield* sql`INSERT INTO registration (id, state, version, last_seq) VALUES (1, 'unregistered', 0, 0)`
    yield* sql`CREATE TABLE providers (
      npi TEXT PRIMARY KEY,
      status TEXT NOT NULL,
      version INTEGER NOT NULL,
      provider_id TEXT,
      name TEXT,
      types TEXT,
      specialty TEXT,
      endpoint_url TEXT,
      last_error TEXT,
      created_at TEXT NOT NULL,
      updated_at TEXT NOT NULL
    )`
    yield* sql`CREATE TABLE relationships (
      relationship_id TEXT PRIMARY KEY,
      patient_agent_id TEXT NOT NULL,
      provider_npi TEXT NOT NULL,
      patient_public_key TEXT NOT NULL,
      consented_actions TEXT NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('active','revoked')),
      created_at TEXT NOT NULL,
      updated_at TEXT NOT NULL
    )`
    yield* sql`CREATE UNIQUE INDEX relationships_active ON relationships (patient_agent_id, provider_npi) WHERE status = 'active'`
    // UNIQUE (stream, version): a second writer of the same version fails even outside this process.
    // No AUTOINCREMENT: rows are never deleted, so the rowid grows by one anyway, without a sqlite_sequence write.
    yield* sql`CREATE TABLE lifecycle_events (
      seq INTEGER PRIMARY KEY,
      stream TEXT NOT NULL,
      version INTEGER NOT NULL,
      type TEXT NOT NULL,
      payload TEXT NOT NULL,
      at TEXT NOT NULL,
      UNIQUE (stream, version)
    )`
    yield* sql`CREATE TABLE audit_log (
      seq INTEGER PRIMARY KEY,
      at TEXT NOT NULL,
      actor TEXT NOT NULL,
      action TEXT NOT NULL,
      subject TEXT,
      details TEXT NOT NULL,
      prev_hash TEXT NOT NULL,
      hash TEXT NOT NULL
    )`
    yield* sql`CREATE INDEX audit_log_action ON audit_log (action, seq)`
    // Both logs are append-only for this program. Someone with the file can drop these triggers; the
    // audit hash chain is what detects that kind of change.
    for (const table of ["lifecycle_events", "audit_log"]) {
      for (const op of ["UPDATE", "DELETE"]) {
        yield* sql.unsafe(
          `CREATE TRIGGER ${table}_no_${op.toLowerCase()} BEFORE ${op} ON ${table}
           BEGIN SELECT RAISE(ABORT, '${table} is append-only'); END`
        )
      }
    }
  }),
  "0002_api_keys": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // Only the key's SHA-256 (hex) is kept: the key itself is shown once, when it is made. A revoked key keeps
    // its row (revoked_at set) so that the list and the audit trail still name it.
    yield* sql`CREATE TABLE api_keys (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      scope TEXT NOT NULL CHECK (scope IN ('read','admin')),
      key_hash TEXT NOT NULL UNIQUE,
      created_at TEXT NOT NULL,
      last_used_at TEXT,
      revoked_at TEXT
    )`
  }),
  // Relationships that end (PROTOCOL.md section 8): `terminated` joins the states, and the end is recorded
  // (`ended_at`, `end_reason`). SQLite cannot change a CHECK in place: the table is rebuilt (create, copy, drop,
  // rename; the Migrator runs this in one transaction). Rows revoked before this migration ended when they were
  // last updated. Two rules are the database's, not only the code's: ended and active agree with `ended_at`, and
  // an end is permanent (a trigger refuses any change of an ended row's status).
  "0003_relationship_ends": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE relationships_new (
      relationship_id TEXT PRIMARY KEY,
      patient_agent_id TEXT NOT NULL,
      provider_npi TEXT NOT NULL,
      patient_public_key TEXT NOT NULL,
      consented_actions TEXT NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('active','revoked','terminated')),
      created_at TEXT NOT NULL,
      updated_at TEXT NOT NULL,
      ended_at TEXT,
      end_reason TEXT,
      CHECK ((status = 'active') = (ended_at IS NULL))
    )`
    yield* sql`INSERT INTO relationships_new
      (relationship_id, patient_agent_id, provider_npi, patient_public_key, consented_actions, status,
       created_at, updated_at, ended_at, end_reason)
      SELECT relationship_id, patient_agent_id, provider_npi, patient_public_key, consented_actions, status,
        created_at, updated_at, CASE WHEN status = 'active' THEN NULL ELSE updated_at END, NULL
      FROM relationships`
    yield* sql`DROP TABLE relationships`
    yield* sql`ALTER TABLE relationships_new RENAME TO relationships`
    yield* sql`CREATE UNIQUE INDEX relationships_active ON relationships (patient_agent_id, provider_npi) WHERE status = 'active'`
    yield* sql`CREATE INDEX relationships_provider ON relationships (provider_npi, created_at)`
    yield* sql`CREATE TRIGGER relationships_end_is_permanent BEFORE UPDATE OF status, ended_at, end_reason ON relationships
      WHEN OLD.status <> 'active'
      BEGIN SELECT RAISE(ABORT, 'an ended relationship cannot change'); END`
  })
}
