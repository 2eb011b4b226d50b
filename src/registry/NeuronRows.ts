/**
 * Rows of the `neurons` table and the index entries made from them. The last heartbeat is the later of the
 * row's own (written with registrations and changes) and the group-committed one in `heartbeats`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type { NeuronEntry, StoredStatus } from "./NeuronIndex.js"
import { tokenKeyOf } from "./NeuronIndex.js"

/** A row of `neurons` as SQLite returns it. */
export interface NeuronRow {
  readonly seq: number
  readonly registration_id: string
  readonly organization_npi: string
  readonly organization_name: string
  readonly organization_type: string
  readonly neuron_endpoint_url: string
  readonly heartbeat_interval_s: number
  readonly token_hash: string
  readonly status: StoredStatus
  readonly last_heartbeat_at: number
  readonly registered_at: number
}

/** The index entry for a row. */
export const toEntry = (row: NeuronRow): NeuronEntry => ({
  registrationId: row.registration_id,
  seq: row.seq,
  organizationNpi: row.organization_npi,
  organizationName: row.organization_name,
  organizationType: row.organization_type,
  endpointUrl: row.neuron_endpoint_url,
  intervalS: row.heartbeat_interval_s,
  tokenKey: tokenKeyOf(Buffer.from(row.token_hash, "hex")),
  status: row.status,
  lastHeartbeatMs: row.last_heartbeat_at,
  registeredAtMs: row.registered_at,
  lastBeatText: undefined
})

/** Every registration (deregistered ones too: their tokens must keep answering 404), as index entries. */
export const loadAll = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql<NeuronRow>`SELECT n.seq, n.registration_id, n.organization_npi, n.organization_name, n.organization_type,
    n.neuron_endpoint_url, n.heartbeat_interval_s, n.token_hash, n.status, n.registered_at,
    max(n.last_heartbeat_at, coalesce(h.last_heartbeat_at, 0)) AS last_heartbeat_at
    FROM neurons n LEFT JOIN heartbeats h ON h.seq = n.seq`
).pipe(Effect.map((rows) => rows.map(toEntry)))
