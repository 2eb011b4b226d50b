/**
 * The registry's SQLite schema. Timestamps are integer milliseconds since the epoch (UTC), so the monitor
 * compares numbers; the wire turns them into ISO-8601 strings.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"

const statements = (...texts: ReadonlyArray<string>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.forEach(texts, (text) => sql.unsafe(text), { discard: true }))

/** Migrations for `Sqlite.layer`, by name, applied in order. */
export const migrations = {
  "0001_create_neurons": statements(
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
  ),
  // The group-committed heartbeat times, apart from the wide registration rows: a commit of a few hundred
  // scattered heartbeats rewrites a few narrow pages instead of one wide page per neuron. A neuron's last
  // heartbeat is the later of this and `neurons.last_heartbeat_at` (written with registrations and changes).
  "0002_create_heartbeats": statements(
    `CREATE TABLE heartbeats (
      seq INTEGER PRIMARY KEY REFERENCES neurons (seq),
      last_heartbeat_at INTEGER NOT NULL
    )`
  )
}
