/**
 * API keys for the admin API (PROTOCOL.md section 7): `nrn_` and 43 base64url characters (32 random bytes), shown
 * once when made and kept only as their SHA-256 (table `api_keys`). Scope `read` may call the admin API's GET
 * routes, `admin` every admin route. A lookup reads the database every time, so a revoked key fails on the very
 * next request. Making and revoking a key are audited by id and name, never the key.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as SqlSchema from "@effect/sql/SqlSchema"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { createHash, randomBytes } from "node:crypto"
import { NeuronMetrics, timeTransaction } from "../observability/NeuronMetrics.js"
import * as Sqlite from "../sql/Sqlite.js"
import { AuditLog } from "../store/AuditLog.js"

/** What a key may do. */
export const ApiKeyScope = Schema.Literal("read", "admin")
/** @see ApiKeyScope */
export type ApiKeyScope = typeof ApiKeyScope.Type

/** A key as listed: never the key, never its hash. */
export const ApiKeyInfo = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  scope: ApiKeyScope,
  created_at: Schema.String,
  last_used_at: Schema.NullOr(Schema.String),
  revoked_at: Schema.NullOr(Schema.String)
})
/** @see ApiKeyInfo */
export type ApiKeyInfo = typeof ApiKeyInfo.Type

/** A key just made: the only time `key` exists outside the caller's hands. */
export interface CreatedApiKey {
  readonly id: string
  readonly key: Redacted.Redacted<string>
  readonly name: string
  readonly scope: ApiKeyScope
  readonly created_at: string
}

/** No key with this id. */
export class ApiKeyNotFound extends Schema.TaggedError<ApiKeyNotFound>()("ApiKeyNotFound", {
  reason: Schema.Literal("not_found"),
  message: Schema.String
}) {}

/** The shape of a key; anything else is not one (and is never looked up). */
export const KEY_PATTERN = /^nrn_[A-Za-z0-9_-]{43}$/

/** True when `text` has the shape of an API key. */
export const looksLikeKey = (text: string): boolean => KEY_PATTERN.test(text)

const hashOf = (key: string) => createHash("sha256").update(key).digest("hex")

// `last_used_at` is written at most once a minute per key: a read-only request should not cost an fsync each time.
const LAST_USED_RESOLUTION_MS = 60_000

/** Builds the service on the host's SqlClient and the audit log. */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // BEGIN IMMEDIATE, waiting on a Schedule for another process's lock; storage failures are StorageUnavailable.
  const inWriteTransaction = Sqlite.writeTransaction(sql)
  const audit = yield* AuditLog
  const metrics = yield* Effect.serviceOption(NeuronMetrics)
  const lastWritten = new Map<string, number>()

  const nowIso = Effect.map(DateTime.now, DateTime.formatIso)

  const findByHash = SqlSchema.findOne({
    Request: Schema.String,
    Result: ApiKeyInfo,
    execute: (hash) =>
      sql`SELECT id, name, scope, created_at, last_used_at, revoked_at FROM api_keys WHERE key_hash = ${hash}`
  })
  const findAll = SqlSchema.findAll({
    Request: Schema.Void,
    Result: ApiKeyInfo,
    execute: () =>
      sql`SELECT id, name, scope, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at, id`
  })

  /** Makes a key; its text is in the answer and nowhere else. */
  const create = Effect.fn("ApiKeys.create")(
    function*(input: { readonly name: string; readonly scope: ApiKeyScope; readonly actor: string }) {
      const key = `nrn_${randomBytes(32).toString("base64url")}`
      const id = `key_${randomBytes(9).toString("base64url")}`
      const created_at = yield* nowIso
      yield* inWriteTransaction(Effect.gen(function*() {
        yield* sql`INSERT INTO api_keys (id, name, scope, key_hash, created_at)
                 VALUES (${id}, ${input.name}, ${input.scope}, ${hashOf(key)}, ${created_at})`
        yield* audit.append({
          at: created_at,
          actor: input.actor,
          action: "api_key.created",
          subject: id,
          details: { name: input.name, scope: input.scope }
        })
      })).pipe(timeTransaction(metrics, "api_key"), Effect.catchTag("SqlError", Effect.die))
      return { id, key: Redacted.make(key), name: input.name, scope: input.scope, created_at } satisfies CreatedApiKey
    }
  )

  /** Every key, revoked ones included. */
  const list = findAll(undefined).pipe(Effect.orDie, Effect.withSpan("ApiKeys.list"))

  /** Revokes a key from the next request on; revoking a revoked key changes nothing. */
  const revoke = Effect.fn("ApiKeys.revoke")(function*(id: string, actor: string) {
    const revoked_at = yield* nowIso
    const rows = yield* inWriteTransaction(Effect.gen(function*() {
      const rows = yield* sql<{ name: string; revoked_at: string | null }>`
        SELECT name, revoked_at FROM api_keys WHERE id = ${id}`
      const row = rows[0]
      if (row === undefined || row.revoked_at !== null) return rows
      yield* sql`UPDATE api_keys SET revoked_at = ${revoked_at} WHERE id = ${id}`
      yield* audit.append({
        at: revoked_at,
        actor,
        action: "api_key.revoked",
        subject: id,
        details: { name: row.name }
      })
      return rows
    })).pipe(timeTransaction(metrics, "api_key"), Effect.catchTag("SqlError", Effect.die))
    lastWritten.delete(id)
    if (rows.length === 0) return yield* new ApiKeyNotFound({ reason: "not_found", message: `no API key ${id}` })
  })

  /** The live key that `key` is, if any (unknown, revoked or malformed: none); notes its use. */
  const authenticate = (key: string): Effect.Effect<Option.Option<ApiKeyInfo>> =>
    Effect.gen(function*() {
      if (!looksLikeKey(key)) return Option.none()
      const found = Option.filter(yield* findByHash(hashOf(key)), (k) => k.revoked_at === null)
      if (Option.isNone(found)) return found
      const now = yield* Clock.currentTimeMillis
      const id = found.value.id
      if (now - (lastWritten.get(id) ?? -Infinity) >= LAST_USED_RESOLUTION_MS) {
        lastWritten.set(id, now)
        // Noting the use must not refuse the request: under a full disk or another process's lock it waits for a
        // later request (one try, no wait for the lock).
        yield* sql`UPDATE api_keys SET last_used_at = ${new Date(now).toISOString()} WHERE id = ${id}`.pipe(
          Sqlite.writeTransaction(sql, { waitForLock: false }),
          Effect.catchTag("StorageUnavailable", () => Effect.sync(() => lastWritten.delete(id)))
        )
      }
      return found
    }).pipe(Effect.orDie)

  return { create, list, revoke, authenticate } as const
})

/** The API keys on the host's SqlClient (migrated with `NeuronMigrations`). */
export class ApiKeys extends Effect.Service<ApiKeys>()("neuron/ApiKeys", {
  effect: make,
  dependencies: [AuditLog.Default]
}) {}
