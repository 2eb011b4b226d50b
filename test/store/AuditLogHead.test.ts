/**
 * The AuditLog keeps the chain's head in memory (it saves a read per append) and checks it against the
 * database on every insert: a rolled-back transaction, another writer on the same file, or a restart must
 * never leave a gap or a broken link.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { NeuronMetrics } from "../../src/observability/NeuronMetrics.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { NeuronMigrations } from "../../src/store/migrations.js"

/** An AuditLog and its SqlClient on `filename` (each call builds a new one: another writer). */
const auditOn = (filename: string) =>
  Effect.flatMap(
    Layer.build(AuditLog.Default.pipe(Layer.provideMerge(Sqlite.layer({ filename, migrations: NeuronMigrations })))),
    (context) =>
      Effect.map(
        Effect.all([AuditLog, SqlClient.SqlClient]),
        ([audit, sql]) => ({ audit, sql })
      ).pipe(Effect.provide(context))
  ).pipe(Effect.orDie)

const seqs = (audit: AuditLog) => Effect.map(audit.list(), (entries) => entries.map((e) => [e.seq, e.action]))

describe("AuditLog chain head kept in memory", () => {
  it.scoped("an append rolled back with its transaction leaves no gap: the next append takes its place", () =>
    Effect.gen(function*() {
      const { audit, sql } = yield* auditOn(`${yield* Sqlite.makeTempDir()}/neuron.db`)
      yield* audit.append({ actor: "a", action: "first" })
      const rolledBack = yield* Effect.exit(
        sql.withTransaction(Effect.zipRight(audit.append({ actor: "a", action: "undone" }), Effect.fail("abort")))
      )
      assert.isTrue(rolledBack._tag === "Failure")
      yield* audit.append({ actor: "a", action: "second" })
      assert.deepStrictEqual(yield* seqs(audit), [[1, "first"], [2, "second"]])
      assert.deepStrictEqual(yield* audit.verify(), { ok: true, entries: 2, head: (yield* audit.list())[1]!.hash })
    }))

  it.scoped("two writers on one file (or a restart) keep one sound chain", () =>
    Effect.gen(function*() {
      const filename = `${yield* Sqlite.makeTempDir()}/neuron.db`
      const one = yield* auditOn(filename)
      const two = yield* auditOn(filename)
      yield* one.audit.append({ actor: "a", action: "one" })
      yield* two.audit.append({ actor: "b", action: "two" })
      yield* one.audit.append({ actor: "a", action: "three" })
      yield* two.audit.appendAll([{ actor: "b", action: "four" }, { actor: "b", action: "five" }])
      yield* one.audit.append({ actor: "a", action: "six" })
      assert.deepStrictEqual(yield* seqs(one.audit), [
        [1, "one"],
        [2, "two"],
        [3, "three"],
        [4, "four"],
        [5, "five"],
        [6, "six"]
      ])
      assert.isTrue((yield* one.audit.verify()).ok)
    }))

  it.scoped("appendAll writes its entries in order in one transaction, each with its own time when given", () =>
    Effect.gen(function*() {
      const { audit } = yield* auditOn(`${yield* Sqlite.makeTempDir()}/neuron.db`)
      yield* audit.appendAll([
        { at: "2026-11-22T10:29:59.000Z", actor: "anonymous", action: "handshake.started", details: { b: 1, a: 2 } },
        { actor: "patient:p", action: "handshake.completed", subject: "r1" }
      ])
      const [started, completed] = yield* audit.list()
      assert.strictEqual(started!.at, "2026-11-22T10:29:59.000Z")
      assert.deepStrictEqual(started!.details, { a: 2, b: 1 })
      assert.strictEqual(completed!.prev_hash, started!.hash)
      assert.strictEqual(completed!.subject, "r1")
      // A secret in one entry refuses the whole call: nothing is written.
      const refused = yield* Effect.exit(
        audit.appendAll([{ actor: "a", action: "x" }, { actor: "a", action: "y", details: { bearer_token: "t" } }])
      )
      assert.isTrue(refused._tag === "Failure")
      assert.strictEqual((yield* audit.list()).length, 2)
    }))
})

describe("AuditLog appends outside a transaction", () => {
  it.live("group commit: appends made while the connection is busy share one transaction; each call's entries stay together, in order, and the chain verifies", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const metrics = yield* NeuronMetrics
        const { audit, sql } = yield* Effect.provide(
          auditOn(`${yield* Sqlite.makeTempDir()}/neuron.db`),
          Layer.succeed(NeuronMetrics, metrics)
        )
        // Another transaction holds the one connection while the appends arrive: the first is taken alone and
        // waits for it, the others queue up behind it and are written together once it is free.
        const release = yield* Deferred.make<void>()
        const holding = yield* Deferred.make<void>()
        const holder = yield* Effect.fork(
          sql.withTransaction(Effect.zipRight(Deferred.succeed(holding, undefined), Deferred.await(release)))
        )
        yield* Deferred.await(holding)
        const first = yield* Effect.fork(audit.append({ actor: "first", action: "x" }))
        yield* Effect.sleep("20 millis")
        const calls = yield* Effect.fork(Effect.all(
          ["a", "b", "c"].map((actor) =>
            audit.appendAll([{ actor, action: "one" }, { actor, action: "two" }, { actor, action: "three" }])
          ),
          { concurrency: "unbounded" }
        ))
        yield* Effect.sleep("20 millis")
        // Nothing is answered before its commit.
        assert.isNull(calls.unsafePoll())
        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(holder)
        yield* Fiber.join(first)
        yield* Fiber.join(calls)
        const entries = yield* audit.list()
        assert.strictEqual(entries[0]!.actor, "first")
        const rest = entries.slice(1).map((e) => `${e.actor}:${e.action}`)
        for (const actor of ["a", "b", "c"]) {
          const at = rest.indexOf(`${actor}:one`)
          assert.deepStrictEqual(rest.slice(at, at + 3), [`${actor}:one`, `${actor}:two`, `${actor}:three`])
        }
        assert.strictEqual(rest.length, 9)
        assert.isTrue((yield* audit.verify()).ok)
        assert.deepStrictEqual(entries.map((e) => e.seq), Array.from({ length: 10 }, (_, i) => i + 1))
        // Two transactions: the first call alone, then the three together.
        const sizes = ((yield* Effect.promise(() => metrics.registry.getMetricsAsJSON()))
          .find((m) => m.name === "neuron_sqlite_group_commit_size")?.values ?? []) as Array<
            { metricName?: string; value: number; labels: Record<string, unknown> }
          >
        const sample = (name: string) =>
          sizes.find((v) => v.metricName === name && v.labels.operation === "audit")?.value
        assert.deepStrictEqual(
          [sample("neuron_sqlite_group_commit_size_count"), sample("neuron_sqlite_group_commit_size_sum")],
          [2, 4]
        )
      }).pipe(Effect.provide(NeuronMetrics.layer))
    ))
})
