import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Prometheus from "prom-client"
import { RelationshipStore } from "../../src/handshake/RelationshipStore.js"
import { NeuronMetrics } from "../../src/observability/NeuronMetrics.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { NeuronMigrations } from "../../src/store/migrations.js"

const withStore = <A, E, R = never>(
  self: Effect.Effect<A, E, RelationshipStore | SqlClient.SqlClient | AuditLog | R>,
  extra: Layer.Layer<R> = Layer.empty as Layer.Layer<R>
) =>
  Effect.flatMap(Sqlite.makeTempDir("relationships-"), (dir) =>
    Effect.provide(
      self,
      Layer.mergeAll(RelationshipStore.Default, AuditLog.Default).pipe(
        Layer.provideMerge(Layer.merge(
          Sqlite.layer({ filename: `${dir}/neuron.db`, migrations: NeuronMigrations }),
          extra
        ))
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

  it.scoped("establish writes its audit entries in its transaction, and beforeCommit abandons it: nothing of it is kept", () =>
    withStore(Effect.gen(function*() {
      const store = yield* RelationshipStore
      const audit = yield* AuditLog
      const failed = yield* Effect.flip(store.establish(request, {
        audit: (e) => [{ actor: "t", action: "x", subject: e.relationship_id }],
        beforeCommit: () => "a frame came after the last expected message" as const
      }))
      assert.strictEqual(failed, "a frame came after the last expected message")
      assert.strictEqual((yield* store.list()).length, 0)
      assert.strictEqual((yield* audit.list()).length, 0)
      const ok = yield* store.establish(request, {
        audit: (e) => [{ actor: "t", action: "x", subject: e.relationship_id }],
        beforeCommit: () => undefined
      })
      assert.strictEqual((yield* audit.list())[0]!.subject, ok.relationship_id)
    })))

  it.live("establishNow (no fiber): the callback gets the outcome after the commit (new, then existing, key_mismatch), with the audit entries written; beforeCommit abandons it", () =>
    Effect.scoped(withStore(Effect.gen(function*() {
      const store = yield* RelationshipStore
      const audit = yield* AuditLog
      const establishNow = (r: typeof request, beforeCommit?: () => string | undefined) =>
        Effect.async<Exit.Exit<unknown, unknown>>((resume) =>
          store.establishNow(r, {
            audit: (e) => [{ actor: "t", action: "x", subject: e.relationship_id }],
            ...(beforeCommit === undefined ? {} : { beforeCommit })
          }, (outcome) => resume(Effect.succeed(outcome)))
        )
      const first = yield* establishNow(request)
      assert.isTrue(Exit.isSuccess(first))
      const established = (first as Exit.Success<{ relationship_id: string; status: string }, never>).value
      assert.strictEqual(established.status, "new")
      assert.strictEqual((yield* audit.list())[0]!.subject, established.relationship_id)
      const again = yield* establishNow(request)
      assert.deepStrictEqual(again, Exit.succeed({ relationship_id: established.relationship_id, status: "existing" }))
      const mismatch = yield* establishNow({ ...request, patient_public_key: "B".repeat(43) })
      assert.isTrue(Exit.isFailure(mismatch))
      assert.include(String(mismatch), "key_mismatch")
      const abandoned = yield* establishNow({ ...request, patient_agent_id: "p9" }, () => "late frame")
      assert.deepStrictEqual(abandoned, Exit.fail("late frame"))
      assert.strictEqual((yield* store.list()).length, 1)
      assert.strictEqual((yield* audit.list()).length, 2)
    }))))

  // The client's one connection is held by another transaction while completions arrive: they queue up behind
  // it, and the writer takes them together once it is free.
  const heldWhile = <A, E, R>(
    submit: (store: RelationshipStore) => Effect.Effect<A, E, R>
  ) =>
    Effect.gen(function*() {
      const store = yield* RelationshipStore
      const sql = yield* SqlClient.SqlClient
      const release = yield* Deferred.make<void>()
      const holding = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(
        sql.withTransaction(Effect.zipRight(Deferred.succeed(holding, undefined), Deferred.await(release)))
      )
      yield* Deferred.await(holding)
      // The first completion is taken alone and waits for the connection; the next ones queue behind it.
      const first = yield* Effect.fork(store.establish({ ...request, patient_agent_id: "first" }))
      yield* Effect.sleep("20 millis")
      const rest = yield* Effect.fork(submit(store))
      yield* Effect.sleep("20 millis")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      assert.strictEqual((yield* Fiber.join(first)).status, "new")
      return yield* Fiber.join(rest)
    })

  const sizes = (registry: Prometheus.Registry) =>
    Effect.promise(async () => {
      const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === "neuron_sqlite_group_commit_size")
      const values = (metric?.values ?? []) as Array<{ metricName?: string; value: number }>
      return {
        count: values.find((v) => v.metricName === "neuron_sqlite_group_commit_size_count")?.value,
        sum: values.find((v) => v.metricName === "neuron_sqlite_group_commit_size_sum")?.value
      }
    })

  it.live("group commit: completions that arrive together share one transaction, each with its own outcome (new, existing, key_mismatch) and audit entries", () =>
    Effect.scoped(withStore(
      Effect.gen(function*() {
        const metrics = yield* NeuronMetrics
        const other = { ...request, patient_agent_id: "p2" }
        const outcomes = yield* heldWhile((store) =>
          Effect.all([
            store.establish(request, { audit: (e) => [{ actor: "a", action: "x", subject: e.relationship_id }] }),
            store.establish(request, { audit: (e) => [{ actor: "b", action: "x", subject: e.relationship_id }] }),
            store.establish(other),
            Effect.flip(store.establish({ ...other, patient_public_key: "B".repeat(43) }))
          ], { concurrency: "unbounded" })
        )
        const [a, b, c, mismatch] = outcomes
        assert.strictEqual(a.status, "new")
        assert.deepStrictEqual(b, { relationship_id: a.relationship_id, status: "existing" })
        assert.strictEqual(c.status, "new")
        assert.strictEqual(mismatch.reason, "key_mismatch")
        // The first alone, then the four in one transaction.
        assert.deepStrictEqual(yield* sizes(metrics.registry), { count: 2, sum: 5 })
        const store = yield* RelationshipStore
        assert.deepStrictEqual(
          (yield* store.list()).map((r) => r.patient_agent_id).sort(),
          ["first", "p1", "p2"]
        )
        const entries = yield* (yield* AuditLog).list()
        assert.deepStrictEqual(entries.map((e) => [e.actor, e.subject]), [
          ["a", a.relationship_id],
          ["b", a.relationship_id]
        ])
        assert.isTrue((yield* (yield* AuditLog).verify()).ok)
      }),
      NeuronMetrics.layer
    )))

  it.live("group commit: a completion abandoned before the commit fails alone; the others of its batch are written one by one", () =>
    Effect.scoped(withStore(
      Effect.gen(function*() {
        const metrics = yield* NeuronMetrics
        const [kept, abandoned, also] = yield* heldWhile((store) =>
          Effect.all([
            store.establish(request, { audit: (e) => [{ actor: "kept", action: "x", subject: e.relationship_id }] }),
            Effect.flip(store.establish({ ...request, patient_agent_id: "p2" }, {
              audit: (e) => [{ actor: "abandoned", action: "x", subject: e.relationship_id }],
              beforeCommit: () => "late frame" as const
            })),
            store.establish({ ...request, patient_agent_id: "p3" })
          ], { concurrency: "unbounded" })
        )
        assert.strictEqual(kept.status, "new")
        assert.strictEqual(abandoned, "late frame")
        assert.strictEqual(also.status, "new")
        // The batch of three rolled back; written again one by one, the two kept committed alone (with the first:
        // three transactions of one), and the abandoned one committed nothing.
        assert.deepStrictEqual(yield* sizes(metrics.registry), { count: 3, sum: 3 })
        const store = yield* RelationshipStore
        assert.deepStrictEqual((yield* store.list()).map((r) => r.patient_agent_id).sort(), ["first", "p1", "p3"])
        assert.deepStrictEqual((yield* (yield* AuditLog).list()).map((e) => e.actor), ["kept"])
      }),
      NeuronMetrics.layer
    )))
})
