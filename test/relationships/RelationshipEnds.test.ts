/**
 * The relationship's end in the store, on real SQLite files: migration 0003 over a database of 0001, the rules the
 * database itself keeps (an end is permanent, one end event per relationship), revocation under a forgeable
 * stored key, and relationship events staying out of the registration snapshot's replay.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { createPublicKey, verify as nodeVerify } from "node:crypto"
import { RelationshipStore } from "../../src/handshake/RelationshipStore.js"
import { revocationMessage } from "../../src/protocol/ConsentRevocation.js"
import { Relationships } from "../../src/relationships/Relationships.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { NeuronMigrations } from "../../src/store/migrations.js"
import { RegistrationStore } from "../../src/store/RegistrationStore.js"
import { npiOf } from "../support/http.js"

const file = (dir: string) => `${dir}/neuron.db`

/** The services of the store on `dir`'s database, for the length of `self`. */
const withStores = <A, E>(
  dir: string,
  self: Effect.Effect<A, E, Relationships | RelationshipStore | RegistrationStore | AuditLog | SqlClient.SqlClient>
) =>
  Effect.provide(
    self,
    Layer.mergeAll(
      Relationships.DefaultWithoutDependencies.pipe(Layer.provideMerge(RelationshipStore.DefaultWithoutDependencies)),
      RegistrationStore.DefaultWithoutDependencies
    ).pipe(
      Layer.provideMerge(AuditLog.Default),
      Layer.provideMerge(Sqlite.layer({ filename: file(dir), migrations: NeuronMigrations }))
    )
  )

const insertRow = (id: string, key: string, status = "active") =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`INSERT INTO relationships
      (relationship_id, patient_agent_id, provider_npi, patient_public_key, consented_actions, status, created_at,
       updated_at)
      VALUES (${id}, ${"patient-" + id}, ${npiOf(5)}, ${key}, '["read"]', ${status}, '2026-01-01T00:00:00.000Z',
        '2026-02-01T00:00:00.000Z')`)

describe("relationship ends in the store", () => {
  it.scoped(
    "migration 0003_relationship_ends rebuilds the 0001 table: rows kept, a revoked row ends at its updated_at, terminated allowed, the one-active index kept",
    () =>
      Effect.gen(function*() {
        const dir = yield* Sqlite.makeTempDir("relationships-")
        const first = { "0001_neuron_store": NeuronMigrations["0001_neuron_store"]! }
        yield* Effect.scoped(Effect.provide(
          Effect.all([insertRow("a", "k".repeat(43)), insertRow("r", "k".repeat(43), "revoked")]),
          Sqlite.layer({ filename: file(dir), migrations: first })
        ))
        yield* withStores(
          dir,
          Effect.gen(function*() {
            const store = yield* RelationshipStore
            const a = Option.getOrThrow(yield* store.get("a"))
            const r = Option.getOrThrow(yield* store.get("r"))
            assert.deepInclude(a, { status: "active", ended_at: null, end_reason: null })
            assert.deepInclude(r, { status: "revoked", ended_at: "2026-02-01T00:00:00.000Z", end_reason: null })
            const ended = yield* store.end("a", { status: "terminated", reason: "closing" })
            assert.strictEqual(ended.relationship.status, "terminated")
            const sql = yield* SqlClient.SqlClient
            yield* insertRow("b", "k".repeat(43))
            const duplicate = yield* Effect.flip(
              insertRow("c", "k".repeat(43)).pipe(
                Effect.zipRight(
                  sql`UPDATE relationships SET patient_agent_id = 'patient-b' WHERE relationship_id = 'c'`
                )
              )
            )
            assert.include(String(duplicate.cause), "UNIQUE")
          })
        )
      })
  )

  it.scoped(
    "an end is permanent in the database: the trigger refuses changing an ended row, a second end event for one relationship is refused (UNIQUE stream, version), and an active row cannot carry ended_at",
    () =>
      Effect.gen(function*() {
        const dir = yield* Sqlite.makeTempDir("relationships-")
        yield* withStores(
          dir,
          Effect.gen(function*() {
            const store = yield* RelationshipStore
            const sql = yield* SqlClient.SqlClient
            yield* insertRow("x", "k".repeat(43))
            const ended = yield* store.end("x", { status: "revoked", revoked_at: "2026-11-22T10:30:00.000Z" })
            assert.strictEqual(ended.outcome, "ended")
            const again = yield* store.end("x", { status: "terminated", reason: "too late" })
            assert.deepStrictEqual(again, { outcome: "already_ended", relationship: ended.relationship })
            const reopen = yield* Effect.flip(sql`UPDATE relationships SET status = 'active', ended_at = NULL`)
            assert.include(String(reopen.cause), "an ended relationship cannot change")
            const secondEvent = yield* Effect.flip(
              sql`INSERT INTO lifecycle_events (stream, version, type, payload, at)
                  VALUES ('relationship:x', 1, 'RelationshipTerminated', '{}', 't')`
            )
            assert.include(String(secondEvent.cause), "UNIQUE")
            const inconsistent = yield* Effect.flip(
              sql`INSERT INTO relationships
                (relationship_id, patient_agent_id, provider_npi, patient_public_key, consented_actions, status,
                 created_at, updated_at, ended_at)
                VALUES ('y', 'p', ${npiOf(6)}, 'k', '[]', 'active', 't', 't', 't')`
            )
            assert.include(String(inconsistent.cause), "CHECK")
            assert.strictEqual(
              (yield* Effect.flip(store.end("nope", { status: "terminated", reason: "r" })))._tag,
              "RelationshipNotFound"
            )
          })
        )
      })
  )

  it.scopedLive(
    "a revocation under a small-order or non-canonical stored key is refused as weak_key, even with the forged signature node:crypto would accept",
    () =>
      Effect.gen(function*() {
        const dir = yield* Sqlite.makeTempDir("relationships-")
        const identity = Buffer.from("01".padEnd(64, "0"), "hex")
        const nonCanonical = Buffer.from("ee" + "ff".repeat(30) + "7f", "hex")
        yield* withStores(
          dir,
          Effect.gen(function*() {
            const relationships = yield* Relationships
            for (const [id, raw] of [["small", identity], ["noncanonical", nonCanonical]] as const) {
              yield* insertRow(id, raw.toString("base64url"))
              const revoked_at = new Date().toISOString()
              const forged = Buffer.alloc(64)
              forged.set(identity, 0)
              if (id === "small") {
                // The trap: node:crypto alone accepts this signature under this key.
                const key = createPublicKey({
                  key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
                  format: "jwk"
                })
                assert.isTrue(nodeVerify(null, Buffer.from(revocationMessage(id, revoked_at)), key, forged))
              }
              const refused = yield* Effect.flip(
                relationships.revoke({ relationship_id: id, revoked_at, signature: forged.toString("base64url") })
              )
              assert.strictEqual(refused._tag, "ConsentError")
              assert.strictEqual(refused._tag === "ConsentError" && refused.reason, "weak_key")
              assert.strictEqual((yield* relationships.get(id)).status, "active")
            }
          })
        )
      })
  )

  it.scoped(
    "relationship end events share the lifecycle log but not the registration snapshot: a restart does not rebuild it, and the registration's events leave them out",
    () =>
      Effect.gen(function*() {
        const dir = yield* Sqlite.makeTempDir("relationships-")
        const session = (n: number) =>
          withStores(
            dir,
            Effect.gen(function*() {
              const registration = yield* RegistrationStore
              const store = yield* RelationshipStore
              const audit = yield* AuditLog
              return { registration, store, audit }
            }).pipe(
              Effect.flatMap(({ audit, registration, store }) =>
                Effect.gen(function*() {
                  yield* registration.addProvider({ npi: npiOf(10 + n) })
                  yield* insertRow(`r${n}`, "k".repeat(43))
                  const [row] = (yield* store.list()).filter((r) => r.status === "active")
                  yield* store.end(row!.relationship_id, { status: "terminated", reason: "r" })
                  yield* registration.addProvider({ npi: npiOf(20 + n) })
                  return {
                    actions: (yield* audit.list()).map((e) => e.action),
                    events: (yield* registration.events()).map((e) => e.type),
                    verified: yield* audit.verify()
                  }
                })
              )
            )
          )
        const first = yield* session(1)
        assert.deepStrictEqual(first.events, ["ProviderAdded", "ProviderAdded"])
        const second = yield* session(2)
        assert.notInclude(second.actions, "store.snapshot_rebuilt")
        assert.deepStrictEqual(second.events, ["ProviderAdded", "ProviderAdded", "ProviderAdded", "ProviderAdded"])
        assert.isTrue(second.verified.ok)
        assert.deepStrictEqual(second.actions.filter((a) => a === "relationship.terminated").length, 2)
      })
  )
})
