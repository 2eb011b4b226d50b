import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { RelationshipStore } from "../../src/handshake/RelationshipStore.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { NeuronMigrations } from "../../src/store/migrations.js"

const withStore = <A, E>(self: Effect.Effect<A, E, RelationshipStore | SqlClient.SqlClient | AuditLog>) =>
  Effect.flatMap(Sqlite.makeTempDir("relationships-"), (dir) =>
    Effect.provide(
      self,
      Layer.mergeAll(RelationshipStore.Default, AuditLog.Default).pipe(
        Layer.provideMerge(Sqlite.layer({ filename: `${dir}/neuron.db`, migrations: NeuronMigrations }))
      )
    ))

const request = {
  patient_agent_id: "p1",
  provider_npi: "1558598797",
  patient_public_key: "A".repeat(43),
  consented_actions: ["read"]
}

describe("RelationshipStore", () => {
  it.scoped("establish: new, then existing for the same key, key_mismatch for another", () =>
    withStore(Effect.gen(function*() {
      const store = yield* RelationshipStore
      const first = yield* store.establish(request)
      assert.strictEqual(first.status, "new")
      const again = yield* store.establish(request)
      assert.deepStrictEqual(again, { relationship_id: first.relationship_id, status: "existing" })
      const mismatch = yield* Effect.flip(store.establish({ ...request, patient_public_key: "B".repeat(43) }))
      assert.strictEqual(mismatch.reason, "key_mismatch")
      const active = yield* store.active("p1", "1558598797")
      assert.strictEqual(Option.getOrThrow(active).relationship_id, first.relationship_id)
    })))

  it.scoped("racing establishes leave one active row; the database refuses a second active row", () =>
    withStore(Effect.gen(function*() {
      const store = yield* RelationshipStore
      const sql = yield* SqlClient.SqlClient
      const results = yield* Effect.all(Array.from({ length: 10 }, () => store.establish(request)), {
        concurrency: "unbounded"
      })
      assert.strictEqual(results.filter((r) => r.status === "new").length, 1)
      const rows = yield* sql<{ n: number }>`SELECT count(*) AS n FROM relationships`
      assert.strictEqual(rows[0]!.n, 1)
      // The unique partial index itself, not only the code, forbids a duplicate active row.
      const duplicate = yield* Effect.flip(
        sql`INSERT INTO relationships
          (relationship_id, patient_agent_id, provider_npi, patient_public_key, consented_actions, status,
           created_at, updated_at)
          VALUES ('x', 'p1', '1558598797', ${"A".repeat(43)}, '[]', 'active', 't', 't')`
      )
      assert.include(String(duplicate.cause), "UNIQUE")
    })))

  it.scoped("the work passed to establish runs in its transaction: when it fails, no relationship is kept", () =>
    withStore(Effect.gen(function*() {
      const store = yield* RelationshipStore
      const failed = yield* Effect.flip(store.establish(request, () => Effect.fail("audit refused" as const)))
      assert.strictEqual(failed, "audit refused")
      assert.strictEqual((yield* store.list()).length, 0)
      const audit = yield* AuditLog
      const ok = yield* store.establish(
        request,
        (e) => audit.append({ actor: "t", action: "x", subject: e.relationship_id })
      )
      assert.strictEqual((yield* audit.list())[0]!.subject, ok.relationship_id)
    })))
})
