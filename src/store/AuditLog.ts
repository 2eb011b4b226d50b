/**
 * The Neuron's audit log: append-only rows in `audit_log`, hash-chained so that `verify` finds the first
 * entry that was changed, removed or moved. Shared by the RegistrationStore (inside its transitions) and
 * the handshake server. Callers must never put a secret in an entry: keys that name one are refused.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import * as Sqlite from "../sql/Sqlite.js"
import { NeuronMigrations } from "./migrations.js"

/** What a caller appends. `details` is stored as canonical JSON (keys sorted). */
export interface AuditInput {
  readonly actor: string
  readonly action: string
  readonly subject?: string | undefined
  readonly details?: Record<string, unknown> | undefined
}

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
const RawEntry = Schema.Struct({ ...AuditEntry.fields, details: Schema.String })
type RawEntry = typeof RawEntry.Type

/** The result of `verify`: `head` is the last hash, worth recording elsewhere (see docs/store.md). */
export type AuditVerification =
  | { readonly ok: true; readonly entries: number; readonly head: string }
  | { readonly ok: false; readonly brokenAt: number; readonly reason: string }

// Words that name a secret, matched against each part of a key (`bearer_token`, `adminToken`, `api-key`).
const secretWords =
  /^(token|tokens|secret|secrets|password|passphrase|authorization|bearer|credential|credentials|apikey)$/
const keyParts = (key: string) => key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase().split(/[^a-z0-9]+/)
const namesSecret = (key: string) => {
  const parts = keyParts(key)
  return parts.some((p) => secretWords.test(p)) || parts.join("").includes("privatekey") ||
    parts.join("").includes("apikey")
}

/** Canonical JSON: object keys sorted at every depth, so that equal details hash equally. */
export const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (key, v) => {
    if (key !== "" && namesSecret(key)) throw new Error(`audit details must not carry a secret (key "${key}")`)
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v
    const sorted: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k]
    return sorted
  })

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

/** Builds the service on the SqlClient it is given. */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  const head = SqlSchema.findOne({
    Request: Schema.Void,
    Result: Schema.Struct({ seq: Schema.Int, hash: Schema.String }),
    execute: () => sql`SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`
  })
  const insert = SqlSchema.void({
    Request: RawEntry,
    execute: (row) => sql`INSERT INTO audit_log ${sql.insert(row)}`
  })
  const findAll = SqlSchema.findAll({
    Request: Schema.Struct({ action: Schema.NullOr(Schema.String), limit: Schema.Int }),
    Result: AuditEntry,
    execute: ({ action, limit }) =>
      sql`SELECT * FROM (SELECT * FROM audit_log ${action === null ? sql`` : sql`WHERE action = ${action}`}
          ORDER BY seq DESC LIMIT ${limit}) ORDER BY seq`
  })

  /** Appends one entry at the end of the chain (a savepoint when called inside a transaction). */
  const append = Effect.fn("AuditLog.append")(function*(entry: AuditInput) {
    const details = yield* Effect.try(() => canonicalJson(entry.details ?? {})).pipe(
      Effect.catchAll((e) => Effect.dieMessage(e.error instanceof Error ? e.error.message : String(e.error)))
    )
    const at = DateTime.formatIso(yield* DateTime.now)
    const link = Effect.gen(function*() {
      const last = Option.getOrElse(yield* head(undefined), () => ({ seq: 0, hash: GENESIS_HASH }))
      const fields = {
        seq: last.seq + 1,
        at,
        actor: entry.actor,
        action: entry.action,
        subject: entry.subject ?? null,
        details,
        prev_hash: last.hash
      }
      yield* insert({ ...fields, hash: entryHash(fields) })
    })
    // Reading the head and appending must be atomic; inside a caller's transaction they already are, and a
    // savepoint would only cost two more statements on every lifecycle transition.
    const inTransaction = Option.isSome(yield* Effect.serviceOption(SqlClient.TransactionConnection))
    yield* (inTransaction ? link : sql.withTransaction(link)).pipe(Effect.orDie)
  })

  /** Walks the chain from the first entry; reports the first broken link. */
  const verify = Effect.fn("AuditLog.verify")(function*() {
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

  /** Entries in chain order; `limit` keeps the newest ones, `action` filters. */
  const list = (options?: { readonly limit?: number; readonly action?: string }) =>
    findAll({ action: options?.action ?? null, limit: options?.limit ?? -1 }).pipe(
      Effect.orDie,
      Effect.withSpan("AuditLog.list")
    )

  return { append, verify, list } as const
})

/** The audit log on the host's SqlClient (migrated with `NeuronMigrations`). */
export class AuditLog extends Effect.Service<AuditLog>()("neuron/AuditLog", { effect: make }) {
  /** A fake for tests about something else: a fresh in-memory SQLite database per build. */
  static readonly layerMemory = this.Default.pipe(
    Layer.provideMerge(Sqlite.layer({ filename: ":memory:", migrations: NeuronMigrations }))
  )
}
