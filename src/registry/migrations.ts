/**
 * The registry's schema, in both dialects it runs on: SQLite (the embedded default) and PostgreSQL
 * (`AXON_DATABASE_URL`). The same migrations by name, each written once per dialect through
 * `sql.onDialectOrElse`, so both databases always have the same tables, columns and indexes. Timestamps are
 * integer milliseconds since the epoch (UTC; `BIGINT` on PostgreSQL), so the monitor compares numbers and every
 * time comes from the registry's own `Clock`; the wire turns them into ISO-8601 strings.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"

const statements = (...texts: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.forEach(texts, (text) => sql.unsafe(text), { discard: true }))

/** One migration, written for each dialect. */
const dialects = (options: {
  readonly sqlite: ReadonlyArray<string>
  readonly pg: ReadonlyArray<string>
}) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql.onDialectOrElse({
      pg: () => statements(...options.pg),
      orElse: () => statements(...options.sqlite)
    }))

/** Migrations for `Sqlite.layer` and `Postgres.layer`, by name, applied in order. */
export const migrations = {
  "0001_create_neurons": dialects({
    sqlite: [
      `CREATE TABLE neurons (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        registration_id TEXT NOT NULL UNIQUE,
        organization_npi TEXT NOT NULL,
        organization_name TEXT NOT NULL,
        organization_type TEXT NOT NULL,
        neuron_endpoint_url TEXT NOT NULL,
        heartbeat_interval_s INTEGER NOT NULL,
        token_hash TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('reachable', 'down', 'deregistered')),
        last_heartbeat_at INTEGER NOT NULL,
        registered_at INTEGER NOT NULL,
        deregistered_at INTEGER
      )`,
      // At most one live registration per organization: the last line of defence against a racing duplicate.
      `CREATE UNIQUE INDEX neurons_live_npi ON neurons (organization_npi) WHERE status <> 'deregistered'`,
      `CREATE TABLE providers (
        registration_id TEXT NOT NULL REFERENCES neurons (registration_id),
        provider_npi TEXT NOT NULL,
        provider_id TEXT NOT NULL UNIQUE,
        provider_name TEXT,
        provider_types TEXT,
        specialty TEXT,
        provider_endpoint_url TEXT,
        registered_at INTEGER NOT NULL,
        PRIMARY KEY (registration_id, provider_npi)
      )`,
      `CREATE INDEX providers_npi ON providers (provider_npi)`
    ],
    pg: [
      // fillfactor 80: a heartbeat rewrites its row in place on the same page (a HOT update, no index write).
      `CREATE TABLE neurons (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        registration_id TEXT NOT NULL UNIQUE,
        organization_npi TEXT NOT NULL,
        organization_name TEXT NOT NULL,
        organization_type TEXT NOT NULL,
        neuron_endpoint_url TEXT NOT NULL,
        heartbeat_interval_s INTEGER NOT NULL,
        token_hash TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('reachable', 'down', 'deregistered')),
        last_heartbeat_at BIGINT NOT NULL,
        registered_at BIGINT NOT NULL,
        deregistered_at BIGINT
      ) WITH (fillfactor = 80)`,
      `CREATE UNIQUE INDEX neurons_live_npi ON neurons (organization_npi) WHERE status <> 'deregistered'`,
      `CREATE TABLE providers (
        registration_id TEXT NOT NULL REFERENCES neurons (registration_id),
        provider_npi TEXT NOT NULL,
        provider_id TEXT NOT NULL UNIQUE,
        provider_name TEXT,
        provider_types TEXT,
        specialty TEXT,
        provider_endpoint_url TEXT,
        registered_at BIGINT NOT NULL,
        PRIMARY KEY (registration_id, provider_npi)
      )`,
      `CREATE INDEX providers_npi ON providers (provider_npi)`
    ]
  }),
  // The group-committed heartbeat times (SQLite), apart from the wide registration rows: a commit of a few
  // hundred scattered heartbeats rewrites a few narrow pages instead of one wide page per neuron. A neuron's last
  // heartbeat is the later of this and `neurons.last_heartbeat_at`. PostgreSQL writes each heartbeat into its
  // `neurons` row (one HOT update) and leaves this table empty; it exists there so both schemas stay one.
  "0002_create_heartbeats": dialects({
    sqlite: [
      `CREATE TABLE heartbeats (
        seq INTEGER PRIMARY KEY REFERENCES neurons (seq),
        last_heartbeat_at INTEGER NOT NULL
      )`
    ],
    pg: [
      `CREATE TABLE heartbeats (
        seq BIGINT PRIMARY KEY REFERENCES neurons (seq),
        last_heartbeat_at BIGINT NOT NULL
      )`
    ]
  }),
  // Shared state of many instances on one database: the token lookup (a registry without the in-memory index
  // finds a token's owner by it), the alerts as rows (served by every instance), the sweeper's lease (one
  // sweeper at a time), and the index of live neurons in registration order for listings. SQLite, one process
  // with its index in memory and its alerts in files, has the same tables and leaves the last three empty.
  "0003_shared_state": dialects({
    sqlite: [
      `CREATE INDEX neurons_token ON neurons (token_hash)`,
      `CREATE INDEX neurons_live_seq ON neurons (seq) WHERE status <> 'deregistered'`,
      `CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_type TEXT NOT NULL,
        registration_id TEXT NOT NULL,
        organization_npi TEXT NOT NULL,
        missed_beats INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        action TEXT NOT NULL,
        ts INTEGER NOT NULL
      )`,
      `CREATE INDEX alerts_ts ON alerts (ts, id)`,
      `CREATE TABLE sweeper_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        last_sweep_at INTEGER
      )`
    ],
    pg: [
      `CREATE INDEX neurons_token ON neurons (token_hash)`,
      // Listings walk live neurons in registration order: an index on exactly those rows.
      `CREATE INDEX neurons_live_seq ON neurons (seq) WHERE status <> 'deregistered'`,
      `CREATE TABLE alerts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        alert_type TEXT NOT NULL,
        registration_id TEXT NOT NULL,
        organization_npi TEXT NOT NULL,
        missed_beats INTEGER NOT NULL,
        last_seen BIGINT NOT NULL,
        action TEXT NOT NULL,
        ts BIGINT NOT NULL
      )`,
      `CREATE INDEX alerts_ts ON alerts (ts, id)`,
      `CREATE TABLE sweeper_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        holder TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        last_sweep_at BIGINT
      )`
    ]
  }),
  // Found by the plans of issue 14 (docs/registry.md), 100 000 neurons: the monitor reads the shortest interval
  // every second on each PostgreSQL instance (a scan of the table each time without an index), and a listing
  // filtered by a rare status walked the live rows in `seq` order to find none. Neither column changes on a
  // heartbeat, so heartbeats stay HOT updates (no index write).
  "0004_live_interval_and_status": dialects({
    sqlite: [
      `CREATE INDEX neurons_live_interval ON neurons (heartbeat_interval_s) WHERE status <> 'deregistered'`,
      `CREATE INDEX neurons_live_status_seq ON neurons (status, seq) WHERE status <> 'deregistered'`
    ],
    pg: [
      `CREATE INDEX neurons_live_interval ON neurons (heartbeat_interval_s) WHERE status <> 'deregistered'`,
      `CREATE INDEX neurons_live_status_seq ON neurons (status, seq) WHERE status <> 'deregistered'`
    ]
  }),
  // Issue 14, the sweep that moves 1 200 of 100 000 neurons at once: changing `status` (an indexed column) is
  // never a HOT update, so each transition adds an entry to every index of `neurons`, and the B-tree on the
  // 64-character token hashes was the costliest of them (1 506 pages at 100 000 neurons, the largest index; its
  // keys are random, so 1 200 transitions touch most of its leaves). A hash index keeps a 4-byte hash code per
  // row instead of the key: 585 pages, and the same equality lookup for the heartbeat and the token check (the
  // only uses of this index; neither sorts nor ranges over tokens). Measured in BENCHMARKS.md ("Issue 14, session
  // 6"). SQLite has no hash indexes and keeps its B-tree (same name, same column). Dropping and building it locks
  // `neurons` for the build (a fraction of a second per 100 000 neurons), once, in the migration's transaction.
  "0005_token_hash_index": dialects({
    sqlite: [],
    pg: [
      `DROP INDEX neurons_token`,
      `CREATE INDEX neurons_token ON neurons USING hash (token_hash)`
    ]
  })
}
