import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import * as Events from "../../src/store/LifecycleEvent.js"
import { RegistrationStore } from "../../src/store/RegistrationStore.js"
import { captureLogs, counts, organization, P1, P2, withStore } from "./helpers.js"

const TOKEN = "tok_7f3a9c1e5b2d4f6a8c0e2b4d6f8a1c3e"
const answer = {
  registration_id: "reg-42",
  bearer_token: Redacted.make(TOKEN),
  heartbeat_interval_s: 60,
  ttl_s: 180,
  axon_url: "http://127.0.0.1:8600"
}

/** First boot: register, then two providers (one registered, one refused). */
const boot = Effect.gen(function*() {
  const store = yield* RegistrationStore
  const s0 = yield* store.current
  const s1 = yield* store.startRegistration(s0.version, organization)
  yield* store.recordRegistered(s1.version, answer)
  yield* store.addProvider({ npi: P1, name: "Dr Ada", types: ["physician"] })
  yield* store.markProviderRegistered(P1, "prov-1")
  yield* store.addProvider({ npi: P2 })
  yield* store.markProviderRefused(P2, "provider_name and provider_types are required")
})

const file = Effect.map(Sqlite.makeTempDir(), (dir) => `${dir}/neuron.db`)

describe("RegistrationStore", () => {
  it.scoped("each transition writes exactly one event and one audit row", () =>
    Effect.gen(function*() {
      const filename = yield* file
      yield* withStore(
        filename,
        Effect.gen(function*() {
          const store = yield* RegistrationStore
          const audit = yield* AuditLog
          const steps: Array<[string, Effect.Effect<unknown, unknown>]> = [
            [
              "RegistrationStarted",
              Effect.flatMap(store.current, (s) => store.startRegistration(s.version, organization))
            ],
            ["Registered", Effect.flatMap(store.current, (s) => store.recordRegistered(s.version, answer))],
            ["ProviderAdded", store.addProvider({ npi: P1, name: "Dr Ada" })],
            ["ProviderRegistered", store.markProviderRegistered(P1, "prov-1")],
            ["ProviderRemovalRequested", store.requestProviderRemoval(P1)],
            ["ProviderRemoved", store.removeProvider(P1)],
            ["RegistrationLost", Effect.flatMap(store.current, (s) => store.markLost(s.version, "404 on heartbeat"))],
            [
              "RegistrationStarted",
              Effect.flatMap(store.current, (s) => store.startRegistration(s.version, organization))
            ],
            [
              "ConflictDetected",
              Effect.flatMap(store.current, (s) => store.markConflict(s.version, "already registered"))
            ]
          ]
          for (const [tag, step] of steps) {
            const before = yield* counts
            yield* step
            const after = yield* counts
            assert.deepStrictEqual(after, { events: before.events + 1, audit: before.audit + 1 }, tag)
            const [event] = yield* store.events({ limit: 1 })
            assert.strictEqual(event.type, tag)
            assert.strictEqual(event.event._tag, tag)
            const [entry] = yield* audit.list({ limit: 1 })
            assert.strictEqual(entry.action, `lifecycle.${tag}`)
          }
          const current = yield* store.current
          assert.strictEqual(current.state, "conflict")
          assert.strictEqual(current.last_error, "already registered")
          assert.strictEqual(current.version, 5)
          assert.deepStrictEqual(yield* audit.verify(), {
            ok: true,
            entries: steps.length,
            head: (yield* audit.list({ limit: 1 }))[0].hash
          })
        })
      )
    }))

  it.scoped("an invalid transition and a stale version write nothing", () =>
    Effect.gen(function*() {
      const filename = yield* file
      yield* withStore(
        filename,
        Effect.gen(function*() {
          const store = yield* RegistrationStore
          const invalid = yield* Effect.flip(store.recordRegistered(0, answer))
          assert.strictEqual(invalid._tag, "LifecycleError")
          assert.strictEqual(invalid._tag === "LifecycleError" && invalid.reason, "invalid_transition")
          assert.deepStrictEqual(yield* counts, { events: 0, audit: 0 })
          assert.strictEqual((yield* store.current).state, "unregistered")

          yield* store.startRegistration(0, organization)
          const before = yield* counts
          const snapshot = yield* store.current
          const stale = yield* Effect.flip(store.recordRegistered(0, answer))
          assert.strictEqual(stale._tag, "StaleVersion")
          assert.include(stale.message, "expected registration at version 0, found 1")
          assert.deepStrictEqual(yield* counts, before)
          assert.deepStrictEqual(yield* store.current, snapshot)
          assert.isNull(snapshot.bearer_token, "a refused write stores no token")

          // Two writers racing from the same version: exactly one wins.
          const race = yield* Effect.all(
            [store.markConflict(1, "first"), store.markConflict(1, "second")].map(Effect.either),
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(race.map((r) => r._tag).sort(), ["Left", "Right"])
          assert.deepStrictEqual(yield* counts, { events: before.events + 1, audit: before.audit + 1 })

          yield* store.addProvider({ npi: P2 })
          const staleProvider = yield* Effect.flip(
            store.transition(0, new Events.ProviderRemovalRequested({ npi: P2 }), { actor: "test" })
          )
          assert.strictEqual(staleProvider._tag, "StaleVersion")
          assert.include(staleProvider.message, `provider:${P2} at version 0, found 1`)
          const unknown = yield* Effect.flip(store.requestProviderRemoval(P1))
          assert.strictEqual(unknown._tag === "LifecycleError" && unknown.reason, "unknown_provider")
          const missing = yield* Effect.flip(store.transition(2, new Events.Registered(answer), { actor: "test" }))
          assert.strictEqual(missing._tag === "LifecycleError" && missing.reason, "missing_token")
          const bad = yield* Effect.flip(store.addProvider({ npi: P1, name: "" }))
          assert.strictEqual(bad._tag === "LifecycleError" && bad.reason, "invalid_event")
          assert.include(bad.message, "name")
          assert.deepStrictEqual(yield* counts, { events: before.events + 2, audit: before.audit + 2 })
        })
      )
    }))

  it.scoped("a repeat that changes nothing writes nothing; ProviderRegistered needs a registered Neuron", () =>
    Effect.gen(function*() {
      const filename = yield* file
      yield* withStore(
        filename,
        Effect.gen(function*() {
          const store = yield* RegistrationStore
          const early = yield* store.addProvider({ npi: P1, name: "Dr Ada" })
          assert.strictEqual(early.status, "pending", "stored pending while not registered")
          const refused = yield* Effect.flip(store.markProviderRegistered(P1, "prov-1"))
          assert.strictEqual(refused._tag === "LifecycleError" && refused.reason, "invalid_transition")
          yield* boot
          const before = yield* counts
          yield* store.addProvider({ npi: P1, name: "Dr Ada", types: ["physician"] })
          yield* store.markProviderRegistered(P1, "prov-1")
          yield* store.markProviderRefused(P2, "provider_name and provider_types are required")
          yield* store.requestProviderRemoval(P2)
          yield* store.requestProviderRemoval(P2)
          assert.deepStrictEqual(yield* counts, { events: before.events + 1, audit: before.audit + 1 })
          const p2 = Option.getOrThrow(yield* store.getProvider(P2))
          assert.strictEqual(p2.status, "removing")
          assert.strictEqual(p2.last_error, "provider_name and provider_types are required")
        })
      )
    }))

  it.scoped("getProvider (remembered between writes, for the handshake) sees every transition at once", () =>
    Effect.gen(function*() {
      const filename = yield* file
      yield* withStore(
        filename,
        Effect.gen(function*() {
          const store = yield* RegistrationStore
          assert.isTrue(Option.isNone(yield* store.getProvider(P1)))
          assert.isTrue(Option.isNone(yield* store.getProvider(P1)), "the absence is remembered")
          yield* store.addProvider({ npi: P1, name: "Dr Ada", types: ["physician"] })
          assert.strictEqual(Option.getOrThrow(yield* store.getProvider(P1)).status, "pending")
          yield* boot
          yield* store.markProviderRegistered(P1, "prov-1")
          assert.strictEqual(Option.getOrThrow(yield* store.getProvider(P1)).status, "registered")
          yield* store.requestProviderRemoval(P1)
          assert.strictEqual(Option.getOrThrow(yield* store.getProvider(P1)).status, "removing")
          // A failed transition leaves it as it was.
          yield* Effect.flip(store.transition(0, new Events.ProviderRemovalRequested({ npi: P1 }), { actor: "test" }))
          assert.strictEqual(Option.getOrThrow(yield* store.getProvider(P1)).status, "removing")
        })
      )
    }))

  it.scoped("touchHeartbeat writes last_heartbeat_at only: no event, no audit row", () =>
    Effect.gen(function*() {
      const filename = yield* file
      yield* withStore(
        filename,
        Effect.gen(function*() {
          const store = yield* RegistrationStore
          yield* boot
          const before = yield* counts
          const version = (yield* store.current).version
          yield* store.touchHeartbeat(DateTime.unsafeMake("2026-03-01T10:00:00.000Z"))
          const after = yield* store.current
          assert.strictEqual(after.last_heartbeat_at, "2026-03-01T10:00:00.000Z")
          assert.strictEqual(after.version, version)
          assert.deepStrictEqual(yield* counts, before)
        })
      )
    }))

  it.scoped("the bearer token never appears in events, audit entries or log lines", () =>
    Effect.gen(function*() {
      const filename = yield* file
      const logs = captureLogs()
      const dump = Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const events = yield* sql`SELECT * FROM lifecycle_events`
        const audit = yield* sql`SELECT * FROM audit_log`
        return { events, audit }
      }).pipe(Effect.orDie)
      const rows = yield* withStore(
        filename,
        Effect.gen(function*() {
          const store = yield* RegistrationStore
          yield* boot
          const current = yield* store.current
          assert.strictEqual(Redacted.value(current.bearer_token!), TOKEN, "stored and read back Redacted")
          assert.notInclude(JSON.stringify(current), TOKEN)
          assert.notInclude(String(current.bearer_token), TOKEN)
          yield* Effect.log("current registration", current)
          yield* store.startDeregistration(current.version)
          assert.strictEqual(Redacted.value((yield* store.current).bearer_token!), TOKEN, "kept for the DELETE")
          yield* store.recordDeregistered(current.version + 1)
          assert.isNull((yield* store.current).bearer_token, "cleared once deregistered")
          yield* store.rebuild
          return yield* dump
        })
      ).pipe(Effect.provide(logs.layer))
      assert.isAbove(rows.events.length, 5)
      assert.isAbove(rows.audit.length, 5)
      for (const row of [...rows.events, ...rows.audit]) assert.notInclude(JSON.stringify(row), TOKEN)
      assert.isAbove(logs.lines.length, 5)
      assert.isTrue(logs.lines.some((l) => l.includes("current registration")), "the logger captured the lines")
      for (const line of logs.lines) assert.notInclude(line, TOKEN)
    }))

  it.scoped("reopening the same file keeps everything (a restart)", () =>
    Effect.gen(function*() {
      const filename = yield* file
      const read = Effect.gen(function*() {
        const store = yield* RegistrationStore
        const audit = yield* AuditLog
        const current = yield* store.current
        return {
          current: { ...current, bearer_token: current.bearer_token && Redacted.value(current.bearer_token) },
          providers: yield* store.listProviders({ includeRemoved: true }),
          events: yield* store.events(),
          audit: yield* audit.list(),
          verify: yield* audit.verify()
        }
      })
      const first = yield* withStore(filename, Effect.zipRight(boot, read))
      const logs = captureLogs()
      const second = yield* withStore(filename, read).pipe(Effect.provide(logs.layer))
      assert.deepStrictEqual(second, first)
      assert.strictEqual(second.current.bearer_token, TOKEN)
      assert.strictEqual(second.current.state, "registered")
      assert.strictEqual(second.providers.length, 2)
      assert.isFalse(logs.lines.some((l) => l.includes("rebuilt")), "a clean restart rebuilds nothing")
    }))
})
