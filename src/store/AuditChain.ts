/**
 * The audit log's hash chain: how an entry is hashed and linked, and the walk that finds the first broken link.
 * Apart from AuditLog.ts (which writes the chain) so that `neuron verify-audit` can check a database file without
 * loading the Neuron's store and its migrations.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"

/** The first entry's `prev_hash`. */
export const GENESIS_HASH = "0".repeat(64)

/** One stored entry, as `list` returns it. */
export const AuditEntry = Schema.Struct({
  seq: Schema.Int,
  at: Schema.String,
  actor: Schema.String,
  action: Schema.String,
  subject: Schema.NullOr(Schema.String),
  details: Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown })),
  prev_hash: Schema.String,
  hash: Schema.String
})
/** @see AuditEntry */
export type AuditEntry = typeof AuditEntry.Type

/** The row as stored: `details` kept as the exact text that was hashed. */
export const RawEntry = Schema.Struct({ ...AuditEntry.fields, details: Schema.String })
export type RawEntry = typeof RawEntry.Type

/** The result of `verify`: `head` is the last hash, worth recording elsewhere (see docs/store.md). */
export type AuditVerification =
  | { readonly ok: true; readonly entries: number; readonly head: string }
  | { readonly ok: false; readonly brokenAt: number; readonly reason: string }

/** SHA-256 (hex) over the canonical encoding of one entry's fields and the previous hash. */
export const entryHash = (e: Omit<RawEntry, "hash">): string =>
  createHash("sha256")
    .update(JSON.stringify([e.seq, e.at, e.actor, e.action, e.subject, e.details, e.prev_hash]))
    .digest("hex")

/** Checks one page of rows against the chain so far; `undefined` when they are all sound. */
const checkRows = (rows: ReadonlyArray<unknown>, prev: { seq: number; hash: string }) => {
  for (const row of rows) {
    const decoded = Schema.decodeUnknownEither(RawEntry)(row)
    const seq = typeof (row as any)?.seq === "number" ? (row as any).seq : prev.seq + 1
    if (Either.isLeft(decoded)) return { ok: false as const, brokenAt: seq, reason: "the entry is undecodable" }
    const e = decoded.right
    if (e.seq !== prev.seq + 1) {
      return { ok: false as const, brokenAt: prev.seq + 1, reason: `entry ${prev.seq + 1} is missing (found ${e.seq})` }
    }
    if (e.prev_hash !== prev.hash) {
      return { ok: false as const, brokenAt: e.seq, reason: "prev_hash does not match the previous entry's hash" }
    }
    if (entryHash(e) !== e.hash) {
      return { ok: false as const, brokenAt: e.seq, reason: "hash does not match the entry's contents" }
    }
    prev.seq = e.seq
    prev.hash = e.hash
  }
  return undefined
}

const PAGE = 1000

/** Walks the chain from the first entry, a page at a time; reports the first broken link. */
export const verifyChain: Effect.Effect<AuditVerification, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const prev = { seq: 0, hash: GENESIS_HASH }
  while (true) {
    const rows = yield* sql`SELECT * FROM audit_log WHERE seq > ${prev.seq} ORDER BY seq LIMIT ${PAGE}`.pipe(
      Effect.orDie
    )
    const broken = checkRows(rows, prev)
    if (broken !== undefined) return broken as AuditVerification
    if (rows.length < PAGE) return { ok: true, entries: prev.seq, head: prev.hash } as AuditVerification
  }
})
