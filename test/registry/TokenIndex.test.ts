/**
 * Migration 0005 on PostgreSQL (issue 14, the sweep that moves many neurons at once): the token index becomes a hash
 * index, on a database that already holds registrations, as an upgrade finds it. The tokens issued before the upgrade
 * still authenticate through the new index, another neuron's token is still refused.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { databaseFor, startRegistryWithServices } from "../support/registry.js"
import { call, heartbeat, register } from "./support.js"

const accessMethod = (registry: Effect.Effect.Success<ReturnType<typeof startRegistryWithServices>>) =>
  Effect.map(
    registry.sql<{ am: string }>`SELECT a.amname AS am FROM pg_class c JOIN pg_am a ON a.oid = c.relam
      WHERE c.relname = 'neurons_token'`,
    (rows) => rows.map((row) => row.am)
  )

describe("the token index on PostgreSQL (migration 0005)", () => {
  it.scoped("an upgrade from the B-tree of 0003 builds a hash index; tokens issued before it still authenticate", () =>
    Effect.gen(function*() {
      const dataDir = yield* Sqlite.makeTempDir("axon-")
      const database = yield* databaseFor("postgres")
      const first = yield* Scope.make()
      const before = yield* startRegistryWithServices({ ...database, dataDir }).pipe(Scope.extend(first))
      const a = yield* register(before.url, 1)
      const b = yield* register(before.url, 2)
      assert.deepStrictEqual(yield* accessMethod(before), ["hash"])
      // The database as a registry of migration 0004 left it: the B-tree, and 0005 not applied.
      yield* before.sql`DROP INDEX neurons_token`
      yield* before.sql`CREATE INDEX neurons_token ON neurons (token_hash)`
      yield* before.sql`DELETE FROM effect_sql_migrations WHERE migration_id = 5`
      assert.deepStrictEqual(yield* accessMethod(before), ["btree"])
      yield* Scope.close(first, Exit.void)

      const after = yield* startRegistryWithServices({ ...database, dataDir })
      assert.deepStrictEqual(yield* accessMethod(after), ["hash"])
      assert.strictEqual((yield* heartbeat(after.url, a.registration_id, a.bearer_token)).status, 200)
      assert.strictEqual((yield* heartbeat(after.url, b.registration_id, b.bearer_token)).status, 200)
      assert.strictEqual((yield* heartbeat(after.url, a.registration_id, b.bearer_token)).status, 403)
      assert.strictEqual(
        (yield* call(after.url, "GET", `/v1/neurons/${b.registration_id}`, { token: b.bearer_token })).status,
        200
      )
      assert.strictEqual(
        (yield* call(after.url, "GET", `/v1/neurons/${b.registration_id}`, { token: a.bearer_token })).status,
        403
      )
      // The planner finds a token's row through the hash index once sequential scans are ruled out (two rows).
      const plan = yield* after.sql.withTransaction(Effect.gen(function*() {
        yield* after.sql`SET LOCAL enable_seqscan = off`
        return yield* after.sql<{ "QUERY PLAN": string }>`EXPLAIN SELECT seq FROM neurons WHERE token_hash = 'x'`
      }))
      assert.match(plan.map((row) => row["QUERY PLAN"]).join("\n"), /using neurons_token on neurons/)
    }))
})
