/**
 * The Neuron's audit log: append-only rows in `audit_log`, hash-chained so that `verify` finds the first
 * entry that was changed, removed or moved. Shared by the RegistrationStore (inside its transitions) and
 * the handshake server. Callers must never put a secret in an entry: keys that name one are refused.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { NeuronMetrics } from "../observability/NeuronMetrics.js"
import * as GroupCommit from "../sql/GroupCommit.js"
import * as Sqlite from "../sql/Sqlite.js"
import { AuditEntry, entryHash, GENESIS_HASH, type RawEntry, verifyChain } from "./AuditChain.js"
import { NeuronMigrations } from "./migrations.js"

/** What a caller appends. `details` is stored as canonical JSON (keys sorted). */
export interface AuditInput {
  /** When it happened (ISO 8601, UTC); now when absent. */
  readonly at?: string | undefined
  readonly actor: string
  readonly action: string
  readonly subject?: string | undefined
  readonly details?: Record<string, unknown> | undefined
}

export { AuditEntry, type AuditVerification, entryHash, GENESIS_HASH } from "./AuditChain.js"

// Words that name a secret, matched against each part of a key (`bearer_token`, `adminToken`, `api-key`).
const secretWords =
  /^(token|tokens|secret|secrets|password|passphrase|authorization|bearer|credential|credentials|apikey)$/
const keyParts = (key: string) => key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase().split(/[^a-z0-9]+/)
const checkKey = (key: string) => {
  const parts = keyParts(key)
  return parts.some((p) => secretWords.test(p)) || parts.join("").includes("privatekey") ||
    parts.join("").includes("apikey")
}
// Callers use a handful of keys over and over: remember the verdicts (bounded, in case keys are data).
const verdicts = new Map<string, boolean>()
const namesSecret = (key: string) => {
  let verdict = verdicts.get(key)
  if (verdict === undefined) {
    verdict = checkKey(key)
    if (verdicts.size >= 1024) verdicts.clear()
    verdicts.set(key, verdict)
  }
  return verdict
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

/** The last entry of the chain: its `seq` and `hash` (`{ 0, GENESIS_HASH }` for an empty log). */
interface Head {
  readonly seq: number
  readonly hash: string
}

const COLUMNS = "seq, at, actor, action, subject, details, prev_hash, hash"

const READ_HEAD = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"

/**
 * An INSERT of `n` linked rows that only happens when the chain's head is still the one they were linked to
 * (a compare-and-set on `seq hash`; the last parameter). `INSERT ... SELECT` evaluates the condition before
 * inserting, so it holds for all rows at once. Built once per row count; the driver caches the prepared statement.
 */
const linkedInsert = (() => {
  const texts: Array<string> = []
  return (n: number): string =>
    texts[n] ??= `INSERT INTO audit_log (${COLUMNS}) SELECT * FROM (VALUES ${
      Array.from({ length: n }, () => "(?, ?, ?, ?, ?, ?, ?, ?)").join(", ")
    }) WHERE coalesce((SELECT seq || ' ' || hash FROM audit_log ORDER BY seq DESC LIMIT 1), '0 ${GENESIS_HASH}') = ?
    RETURNING seq`
})()

/** Builds the service on the SqlClient it is given. */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  // On the connection of the caller's transaction (see `appendAll`), else through the client.
  const readHead = (connection: Connection | undefined) =>
    Effect.map(
      connection === undefined ? sql.unsafe<Head>(READ_HEAD) : connection.execute(READ_HEAD, [], undefined),
      (rows): Head => (rows[0] as Head | undefined) ?? { seq: 0, hash: GENESIS_HASH }
    )
  const findAll = SqlSchema.findAll({
    Request: Schema.Struct({ action: Schema.NullOr(Schema.String), limit: Schema.Int }),
    Result: AuditEntry,
    execute: ({ action, limit }) =>
      sql`SELECT * FROM (SELECT * FROM audit_log ${action === null ? sql`` : sql`WHERE action = ${action}`}
          ORDER BY seq DESC LIMIT ${limit}) ORDER BY seq`
  })

  // The chain's head as this process last wrote or read it. Only a hint: every insert checks it against the
  // database (compare-and-set), so a rolled-back transaction, another connection or a restart cost one re-read,
  // never a broken link. This saves the head read on every append (the Neuron is the log's only writer).
  let cachedHead: Head | undefined

  type Pending = Omit<RawEntry, "seq" | "prev_hash" | "hash">

  const link = (head: Head, pending: ReadonlyArray<Pending>): Array<RawEntry> => {
    const rows: Array<RawEntry> = []
    let prev = head
    for (const entry of pending) {
      const fields = { seq: prev.seq + 1, ...entry, prev_hash: prev.hash }
      const row = { ...fields, hash: entryHash(fields) }
      rows.push(row)
      prev = row
    }
    return rows
  }

  const insertLinked = (connection: Connection | undefined, head: Head, rows: ReadonlyArray<RawEntry>) => {
    const text = linkedInsert(rows.length)
    const params = [
      ...rows.flatMap((r) => [r.seq, r.at, r.actor, r.action, r.subject, r.details, r.prev_hash, r.hash]),
      `${head.seq} ${head.hash}`
    ]
    return Effect.map(
      connection === undefined ? sql.unsafe(text, params) : connection.execute(text, params, undefined),
      (inserted) => inserted.length === rows.length
    )
  }

  // Runs holding the connection (in a transaction), so the head cannot move between the read and the insert.
  // Linked to the cached head first; when that is stale (the insert found another head), the head is read and
  // the entries linked again once. Written as plain `flatMap`s: it runs with every handshake's completion.
  const write = (
    pending: ReadonlyArray<Pending>,
    connection?: Connection,
    attempt = 0
  ): Effect.Effect<void, SqlError> => {
    if (attempt === 2) return Effect.dieMessage("audit_log: the chain head moved while appending")
    if (cachedHead === undefined) {
      return Effect.flatMap(readHead(connection), (head) => {
        cachedHead = head
        return write(pending, connection, attempt)
      })
    }
    const head = cachedHead
    const rows = link(head, pending)
    return Effect.flatMap(insertLinked(connection, head, rows), (inserted) => {
      if (inserted) {
        const last = rows[rows.length - 1]!
        cachedHead = { seq: last.seq, hash: last.hash }
        return Effect.void
      }
      cachedHead = undefined
      return write(pending, connection, attempt + 1)
    })
  }

  // Appends outside any transaction (a failed handshake's two entries, an API key's event, ...) are
  // group-committed: those that arrive together go in one transaction, each caller's entries kept together and
  // in order, each caller answered after the commit. A flood of connections that drop right after the upgrade
  // then costs one commit per batch, not one per connection.
  const metrics = yield* Effect.serviceOption(NeuronMetrics)
  const written = (size: number) => Option.isSome(metrics) ? metrics.value.groupCommit("audit", size) : undefined
  const alone = (pending: ReadonlyArray<Pending>) =>
    Effect.orDie(Sqlite.writeTransaction(sql)(Effect.zipLeft(write(pending), Effect.sync(() => written(1)))))
  const standalone = yield* GroupCommit.make<ReadonlyArray<Pending>, void, never, never>({
    single: alone,
    batch: (all) =>
      Sqlite.writeTransaction(sql)(write(all.flat())).pipe(
        Effect.tap(() => written(all.length)),
        Effect.as(all.map(() => Exit.void))
      ),
    maxBatch: 64
  })

  /**
   * Appends entries, in order, at the end of the chain: in the caller's transaction when there is one (they
   * commit or roll back with it), else in a transaction of their own, shared with other appends made at the
   * same moment (group commit: one commit for all of them; the entries of each call stay together). A caller
   * that holds its transaction's connection (`Sqlite.withPreparedTransaction`) passes it: the writes then run
   * on it directly.
   */
  // The entries as rows to link; a string when canonicalJson refuses one (a secret-like key, a value JSON cannot
  // hold): a defect of the caller.
  const prepare = (entries: ReadonlyArray<AuditInput>, nowMillis: number): Array<Pending> | string => {
    const now = new Date(nowMillis).toISOString()
    try {
      return entries.map((entry): Pending => ({
        at: entry.at ?? now,
        actor: entry.actor,
        action: entry.action,
        subject: entry.subject ?? null,
        details: canonicalJson(entry.details ?? {})
      }))
    } catch (e) {
      return e instanceof Error ? e.message : String(e)
    }
  }

  const appendAll = (entries: ReadonlyArray<AuditInput>, connection?: Connection): Effect.Effect<void> =>
    entries.length === 0 ? Effect.void : Effect.clockWith((clock) => {
      const pending = prepare(entries, clock.unsafeCurrentTimeMillis())
      if (typeof pending === "string") return Effect.dieMessage(pending)
      if (connection !== undefined) return Effect.orDie(write(pending, connection))
      return Effect.flatMap(
        Effect.serviceOption(SqlClient.TransactionConnection),
        (inTransaction) => Option.isSome(inTransaction) ? Effect.orDie(write(pending)) : standalone.submit(pending)
      )
    })

  /**
   * `appendAll` outside any transaction, in plain code: the entries join the next group commit and `onDone` is
   * called with the outcome once it has committed (or failed; interrupted when the log is closing). `nowMillis`
   * dates the entries that carry no `at`. Called from the writer: `onDone` must not throw.
   */
  const appendAllNow = (
    entries: ReadonlyArray<AuditInput>,
    nowMillis: number,
    onDone: (exit: Exit.Exit<void>) => void
  ): void => {
    if (entries.length === 0) return onDone(Exit.void)
    const pending = prepare(entries, nowMillis)
    if (typeof pending === "string") return onDone(Exit.die(new Error(pending)))
    standalone.offer(pending, onDone)
  }

  /** Appends one entry at the end of the chain (in the caller's transaction when there is one). */
  const append = (entry: AuditInput) => appendAll([entry])

  /** Walks the chain from the first entry; reports the first broken link. */
  const verify = Effect.fn("AuditLog.verify")(function*() {
    return yield* Effect.provideService(verifyChain, SqlClient.SqlClient, sql)
  })

  /** Entries in chain order; `limit` keeps the newest ones, `action` filters. */
  const list = (options?: { readonly limit?: number; readonly action?: string }) =>
    findAll({ action: options?.action ?? null, limit: options?.limit ?? -1 }).pipe(
      Effect.orDie,
      Effect.withSpan("AuditLog.list")
    )

  return { append, appendAll, appendAllNow, verify, list } as const
})

/** The audit log on the host's SqlClient (migrated with `NeuronMigrations`). */
export class AuditLog extends Effect.Service<AuditLog>()("neuron/AuditLog", { scoped: make }) {
  /** A fake for tests about something else: a fresh in-memory SQLite database per build. */
  static readonly layerMemory = this.Default.pipe(
    Layer.provideMerge(Sqlite.layer({ filename: ":memory:", migrations: NeuronMigrations }))
  )
}
