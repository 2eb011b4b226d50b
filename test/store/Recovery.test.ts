import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { RegistrationStore } from "../../src/store/RegistrationStore.js"
import { captureLogs, counts, organization, P1, P2, withStore } from "./helpers.js"

const TOKEN = "tok_recovery_0123456789abcdef"

const boot = Effect.gen(function*() {
  const store = yield* RegistrationStore
  const s1 = yield* store.startRegistration(0, organization)
  yield* store.recordRegistered(s1.version, {
    registration_id: "reg-7",
    bearer_token: Redacted.make(TOKEN),
    heartbeat_interval_s: 30,
    ttl_s: 90,
    axon_url: "http://axon.example"
  })
  yield* store.addProvider({ npi: P1, name: "Dr Ada", types: ["physician"] })
  yield* store.markProviderRegistered(P1, "prov-1")
  yield* store.addProvider({ npi: P2, specialty: "cardiology" })
  yield* store.requestProviderRemoval(P2)
})

/** Runs raw SQL against the file, the way an outside hand (or a torn write) would change it. */
const tamper = (filename: string, statements: ReadonlyArray<string>) =>
  withStore(
    filename,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      for (const s of statements) yield* sql.unsafe(s)
    }).pipe(Effect.orDie)
  )

const state = Effect.gen(function*() {
  const store = yield* RegistrationStore
  const current = yield* store.current
  return {
    current,
    token: current.bearer_token === null ? null : Redacted.value(current.bearer_token),
    providers: yield* store.listProviders({ includeRemoved: true }),
    counts: yield* counts,
    verify: yield* (yield* AuditLog).verify(),
    lastEvents: (yield* store.events({ limit: 1 })).map((e) => e.event),
    lastAudit: (yield* (yield* AuditLog).list({ limit: 2 })).map((e) => [e.action, e.details])
  }
})

describe("RegistrationStore recovery by replay", () => {
  it.scoped("rebuilds after the snapshot row is deleted: registered without its token comes back lost", () =>
    Effect.gen(function*() {
      const filename = `${yield* Sqlite.makeTempDir()}/neuron.db`
      const before = yield* withStore(filename, Effect.zipRight(boot, state))
      yield* tamper(filename, ["DELETE FROM registration"])
      const logs = captureLogs()
      const after = yield* withStore(filename, state).pipe(Effect.provide(logs.layer))

      assert.isTrue(logs.lines.some((l) => l.includes("level=WARN") && l.includes("the snapshot row is missing")))
      // The providers and the organization come back from the events.
      assert.deepStrictEqual(after.providers, before.providers)
      assert.strictEqual(after.current.organization_npi, before.current.organization_npi)
      assert.strictEqual(after.current.registration_id, "reg-7")
      // The token is never in an event: the Neuron must register again, and says so in both logs.
      assert.strictEqual(after.current.state, "lost")
      assert.isNull(after.token)
      assert.include(after.current.last_error!, "bearer token is not in the event log")
      assert.strictEqual(after.lastEvents[0]._tag, "RegistrationLost")
      assert.deepStrictEqual(after.counts, { events: before.counts.events + 1, audit: before.counts.audit + 2 })
      assert.strictEqual(after.lastAudit[0][0], "store.snapshot_rebuilt")
      assert.deepStrictEqual(after.lastAudit[0][1], {
        reason: "the snapshot row is missing",
        events: before.counts.events,
        must_register_again: true
      })
      assert.strictEqual(after.lastAudit[1][0], "lifecycle.RegistrationLost")
      assert.isTrue(after.verify.ok)
      // And the next transition works from the rebuilt version.
      yield* withStore(
        filename,
        Effect.flatMap(RegistrationStore, (s) => s.startRegistration(after.current.version, organization))
      )
    }))

  it.scoped("rebuilds after the snapshot row is corrupted: the same registration keeps its token", () =>
    Effect.gen(function*() {
      const filename = `${yield* Sqlite.makeTempDir()}/neuron.db`
      const before = yield* withStore(filename, Effect.zipRight(boot, state))
      yield* tamper(filename, ["UPDATE registration SET heartbeat_interval_s = 'sixty', state = 'bogus'"])
      const logs = captureLogs()
      const after = yield* withStore(filename, state).pipe(Effect.provide(logs.layer))
      const warning = logs.lines.find((l) => l.includes("level=WARN"))
      assert.include(warning, "undecodable")
      assert.include(warning, "heartbeat_interval_s")
      assert.deepStrictEqual(after.current, before.current)
      assert.strictEqual(after.token, TOKEN)
      assert.deepStrictEqual(after.providers, before.providers)
      assert.deepStrictEqual(after.counts, { events: before.counts.events, audit: before.counts.audit + 1 })
      assert.strictEqual(after.lastAudit[1][0], "store.snapshot_rebuilt")
      for (const line of logs.lines) assert.notInclude(line, TOKEN)
    }))

  it.scoped("rebuilds when the snapshot's version disagrees with the last event, or a provider row is wrong", () =>
    Effect.gen(function*() {
      const filename = `${yield* Sqlite.makeTempDir()}/neuron.db`
      const before = yield* withStore(filename, Effect.zipRight(boot, state))
      for (
        const [damage, reason] of [
          ["UPDATE registration SET version = 1, state = 'registering'", "disagrees with the event log"],
          ["UPDATE providers SET status = 'gone'", "a provider row is undecodable"],
          [`DELETE FROM providers WHERE npi = '${P2}'`, "the providers disagree with the event log"],
          ["UPDATE providers SET version = 9", "the providers disagree with the event log"]
        ]
      ) {
        yield* tamper(filename, [damage])
        const logs = captureLogs()
        const after = yield* withStore(filename, state).pipe(Effect.provide(logs.layer))
        assert.isTrue(logs.lines.some((l) => l.includes("level=WARN") && l.includes(reason)), damage)
        assert.deepStrictEqual(after.current, before.current, damage)
        assert.deepStrictEqual(after.providers, before.providers, damage)
        assert.strictEqual(after.token, TOKEN, damage)
      }
    }))

  it.scoped("rebuilds a deregistering Neuron without its token as deregistered (the registry's TTL ends it)", () =>
    Effect.gen(function*() {
      const filename = `${yield* Sqlite.makeTempDir()}/neuron.db`
      yield* withStore(
        filename,
        Effect.gen(function*() {
          yield* boot
          const store = yield* RegistrationStore
          yield* store.startDeregistration((yield* store.current).version)
        })
      )
      yield* tamper(filename, ["DELETE FROM registration"])
      const after = yield* withStore(filename, state)
      assert.strictEqual(after.current.state, "deregistered")
      assert.strictEqual(after.lastEvents[0]._tag, "Deregistered")
      assert.include(after.current.last_error!, "expires the old one by its TTL")
      assert.isTrue(after.verify.ok)
    }))

  it.scoped("an explicit rebuild of a sound snapshot changes nothing but one audit row", () =>
    Effect.gen(function*() {
      const filename = `${yield* Sqlite.makeTempDir()}/neuron.db`
      yield* withStore(
        filename,
        Effect.gen(function*() {
          const before = yield* Effect.zipRight(boot, state)
          const rebuilt = yield* Effect.flatMap(RegistrationStore, (s) => s.rebuild)
          assert.deepStrictEqual(rebuilt, before.current)
          const after = yield* state
          assert.deepStrictEqual(after.providers, before.providers)
          assert.deepStrictEqual(after.counts, { events: before.counts.events, audit: before.counts.audit + 1 })
        })
      )
    }))
})
