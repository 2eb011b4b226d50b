import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog, entryHash, GENESIS_HASH } from "../../src/store/AuditLog.js"
import { RegistrationStore } from "../../src/store/RegistrationStore.js"
import { dropTriggers, organization, withStore } from "./helpers.js"

/** Five entries on a fresh file, then `check` on the same database. */
const withFive = <A, E>(check: Effect.Effect<A, E, AuditLog | SqlClient.SqlClient>) =>
  Effect.gen(function*() {
    const filename = `${yield* Sqlite.makeTempDir()}/neuron.db`
    return yield* withStore(
      filename,
      Effect.gen(function*() {
        const audit = yield* AuditLog
        for (let i = 1; i <= 5; i++) {
          yield* audit.append({ actor: "operator", action: i % 2 ? "odd" : "even", subject: `s${i}`, details: { i } })
        }
        return yield* check
      })
    )
  })

const sql = (statement: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement)).pipe(Effect.orDie)
const verify = Effect.flatMap(AuditLog, (a) => a.verify())

describe("AuditLog", () => {
  it.scoped("chains entries: the first prev_hash is 64 zeros, each hash covers the entry and the previous hash", () =>
    withFive(Effect.gen(function*() {
      const entries = yield* (yield* AuditLog).list()
      assert.strictEqual(entries.length, 5)
      assert.strictEqual(entries[0].prev_hash, GENESIS_HASH)
      assert.match(entries[0].hash, /^[0-9a-f]{64}$/)
      for (let i = 1; i < 5; i++) assert.strictEqual(entries[i].prev_hash, entries[i - 1].hash)
      const { hash, ...first } = entries[0]
      assert.strictEqual(entryHash({ ...first, details: JSON.stringify(first.details) }), hash)
      assert.deepStrictEqual(yield* verify, { ok: true, entries: 5, head: entries[4].hash })
    })))

  it.scoped("verify finds a tampered row", () =>
    withFive(Effect.gen(function*() {
      yield* dropTriggers
      yield* sql(`UPDATE audit_log SET details = '{"i":20}' WHERE seq = 3`)
      assert.deepStrictEqual(yield* verify, {
        ok: false,
        brokenAt: 3,
        reason: "hash does not match the entry's contents"
      })
    })))

  it.scoped("verify finds a tampered row whose hash was recomputed (the next link breaks)", () =>
    withFive(Effect.gen(function*() {
      yield* dropTriggers
      const [row] = yield* Effect.orDie(
        Effect.flatMap(SqlClient.SqlClient, (s) => s`SELECT * FROM audit_log WHERE seq = 2`)
      )
      const forged = { ...(row as any), actor: "mallory" }
      yield* sql(`UPDATE audit_log SET actor = 'mallory', hash = '${entryHash(forged)}' WHERE seq = 2`)
      assert.deepStrictEqual(yield* verify, {
        ok: false,
        brokenAt: 3,
        reason: "prev_hash does not match the previous entry's hash"
      })
    })))

  it.scoped("verify finds a deleted row, including the first", () =>
    withFive(Effect.gen(function*() {
      yield* dropTriggers
      yield* sql(`DELETE FROM audit_log WHERE seq = 4`)
      assert.deepStrictEqual(yield* verify, { ok: false, brokenAt: 4, reason: "entry 4 is missing (found 5)" })
      yield* sql(`DELETE FROM audit_log WHERE seq = 1`)
      assert.deepStrictEqual(yield* verify, { ok: false, brokenAt: 1, reason: "entry 1 is missing (found 2)" })
    })))

  it.scoped("verify finds reordered rows", () =>
    withFive(Effect.gen(function*() {
      yield* dropTriggers
      yield* sql(`UPDATE audit_log SET seq = 100 WHERE seq = 2`)
      yield* sql(`UPDATE audit_log SET seq = 2 WHERE seq = 3`)
      yield* sql(`UPDATE audit_log SET seq = 3 WHERE seq = 100`)
      const result = yield* verify
      assert.isFalse(result.ok)
      assert.strictEqual(!result.ok && result.brokenAt, 2)
    })))

  it.scoped("the log is append-only for this program: UPDATE and DELETE are refused by triggers", () =>
    withFive(Effect.gen(function*() {
      const client = yield* SqlClient.SqlClient
      const update = yield* Effect.exit(client`UPDATE audit_log SET actor = 'x' WHERE seq = 1`)
      const remove = yield* Effect.exit(client`DELETE FROM audit_log WHERE seq = 5`)
      assert.isTrue(Exit.isFailure(update) && Exit.isFailure(remove))
      assert.isTrue((yield* verify).ok)
    })))

  it.scoped("refuses details whose key names a secret, and writes nothing", () =>
    withFive(Effect.gen(function*() {
      const audit = yield* AuditLog
      for (
        const details of [{ bearer_token: "x" }, { nested: { adminToken: "x" } }, { api_key: "x" }, { password: 1 }]
      ) {
        const exit = yield* Effect.exit(audit.append({ actor: "a", action: "b", details }))
        assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause), JSON.stringify(details))
      }
      const head = (yield* audit.list({ limit: 1 }))[0].hash
      assert.deepStrictEqual(yield* verify, { ok: true, entries: 5, head })
    })))

  it.scoped("list keeps chain order, filters by action and keeps the newest with limit; details are canonical", () =>
    withFive(Effect.gen(function*() {
      const audit = yield* AuditLog
      assert.deepStrictEqual((yield* audit.list({ action: "odd" })).map((e) => e.seq), [1, 3, 5])
      assert.deepStrictEqual((yield* audit.list({ limit: 2 })).map((e) => e.seq), [4, 5])
      assert.deepStrictEqual((yield* audit.list({ action: "even", limit: 1 })).map((e) => e.subject), ["s4"])
      yield* audit.append({ actor: "a", action: "c", details: { b: 1, a: { d: 2, c: 3 } } })
      const [raw] = yield* Effect.orDie(
        Effect.flatMap(SqlClient.SqlClient, (s) => s<{ details: string }>`SELECT details FROM audit_log WHERE seq = 6`)
      )
      assert.strictEqual(raw.details, `{"a":{"c":3,"d":2},"b":1}`)
    })))

  it.scoped("RegistrationStore's transitions and direct appends share one chain", () =>
    withFive(
      Effect.gen(function*() {
        const store = yield* RegistrationStore
        yield* store.startRegistration(0, organization)
        const audit = yield* AuditLog
        yield* audit.append({ actor: "handshake", action: "handshake.accepted" })
        const entries = yield* audit.list()
        assert.deepStrictEqual(entries.map((e) => e.action).slice(5), [
          "lifecycle.RegistrationStarted",
          "handshake.accepted"
        ])
        assert.deepStrictEqual(entries[5].details, {
          ...organization,
          from: "unregistered",
          to: "registering",
          version: 1
        })
        assert.deepStrictEqual(yield* verify, { ok: true, entries: 7, head: entries[6].hash })
      }).pipe(Effect.provide(RegistrationStore.DefaultWithoutDependencies))
    ))

  it.effect("layerMemory: a fresh in-memory store for tests about something else", () =>
    Effect.gen(function*() {
      const store = yield* RegistrationStore
      yield* store.startRegistration(0, organization)
      assert.strictEqual((yield* store.current).state, "registering")
      assert.deepStrictEqual((yield* (yield* AuditLog).verify()).ok, true)
    }).pipe(Effect.provide(RegistrationStore.layerMemory)))
})
