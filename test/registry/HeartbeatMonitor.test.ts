import * as NodeContext from "@effect/platform-node/NodeContext"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { databaseFor, startRegistryWithServices, STORES, sweepAt } from "../support/registry.js"
import { call, heartbeat, npi, register } from "./support.js"

/** The alert lines on disk (TestClock starts at the epoch, so they are in alerts-19700101.jsonl). */
const alertLines = (dataDir: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const file = `${dataDir}/alerts-19700101.jsonl`
    if (!(yield* fs.exists(file))) return []
    const text = yield* fs.readFileString(file)
    return text.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line))
  }).pipe(Effect.orDie, Effect.provide(NodeContext.layer))

/** Moves the clock to `seconds` after the epoch and waits for the sweep due then to finish. */
const at = (monitor: { awaitSweep: (ms: number) => Effect.Effect<void> }, seconds: number) =>
  sweepAt(monitor, seconds * 1000)

for (const store of STORES) {
  describe(`HeartbeatMonitor (${store})`, () => {
    it.scoped("down after 2 missed intervals, deregistered after 3: exactly one alert line per transition", () =>
      Effect.gen(function*() {
        const { dataDir, monitor, url } = yield* startRegistryWithServices({ store })
        const reg = yield* register(url, 1) // default 60 s interval: sweeps every 30 s
        yield* at(monitor, 120) // exactly 2 intervals: not yet down
        assert.strictEqual((yield* call(url, "GET", "/stats")).body.down_neurons, 0)
        yield* at(monitor, 150)
        let lines = yield* alertLines(dataDir)
        assert.strictEqual(lines.length, 1)
        assert.deepStrictEqual(lines[0], {
          alert_type: "neuron_down",
          registration_id: reg.registration_id,
          organization_npi: npi(1),
          missed_beats: 2,
          last_seen: "1970-01-01T00:00:00.000Z",
          action: lines[0].action,
          ts: "1970-01-01T00:02:30.000Z"
        })
        const stats = (yield* call(url, "GET", "/stats")).body
        assert.deepInclude(stats, { total_neurons: 1, reachable_neurons: 0, down_neurons: 1 })
        assert.strictEqual(stats.last_sweep_at, "1970-01-01T00:02:30.000Z")
        const view = yield* call(url, "GET", `/v1/neurons/${reg.registration_id}`, { token: reg.bearer_token })
        assert.strictEqual(view.body.status, "down")
        assert.strictEqual((yield* call(url, "GET", `/v1/registry/${npi(1)}`)).body.status, "down")
        yield* at(monitor, 180) // still down, still inside 3 intervals: no second alert
        assert.strictEqual((yield* alertLines(dataDir)).length, 1)
        yield* at(monitor, 210)
        lines = yield* alertLines(dataDir)
        assert.deepStrictEqual(lines.map((l) => l.alert_type), ["neuron_down", "neuron_deregistered"])
        assert.strictEqual(lines[1].missed_beats, 3)
        // Deregistered: its routes answer 404, discovery no longer shows it.
        assert.strictEqual((yield* heartbeat(url, reg.registration_id, reg.bearer_token)).status, 404)
        assert.strictEqual((yield* call(url, "GET", `/v1/registry/${npi(1)}`)).status, 404)
        assert.deepStrictEqual((yield* call(url, "GET", "/v1/neurons")).body.neurons, [])
        yield* at(monitor, 600)
        assert.strictEqual((yield* alertLines(dataDir)).length, 2)
        // GET /alerts serves the same lines, newest first, with since and limit.
        const served = (yield* call(url, "GET", "/alerts")).body.alerts
        assert.deepStrictEqual(served.map((a: any) => a.alert_type), ["neuron_deregistered", "neuron_down"])
        const since = (yield* call(url, "GET", "/alerts?since=1970-01-01T00:02:30.000Z")).body.alerts
        assert.deepStrictEqual(since.map((a: any) => a.alert_type), ["neuron_deregistered"])
        assert.strictEqual((yield* call(url, "GET", "/alerts?limit=1")).body.alerts.length, 1)
      }))

    it.scoped("a heartbeat from a down neuron recovers it with one neuron_recovered alert", () =>
      Effect.gen(function*() {
        const { dataDir, monitor, url } = yield* startRegistryWithServices({ store })
        const reg = yield* register(url, 1, { extra: { heartbeat_interval_s: 10 } }) // sweeps every 5 s
        yield* at(monitor, 25)
        assert.deepStrictEqual((yield* alertLines(dataDir)).map((l) => l.alert_type), ["neuron_down"])
        const beat = yield* heartbeat(url, reg.registration_id, reg.bearer_token)
        assert.strictEqual(beat.status, 200)
        assert.strictEqual(beat.body.last_heartbeat_at, "1970-01-01T00:00:25.000Z")
        const lines = yield* alertLines(dataDir)
        assert.deepStrictEqual(lines.map((l) => l.alert_type), ["neuron_down", "neuron_recovered"])
        assert.strictEqual(lines[1].last_seen, "1970-01-01T00:00:25.000Z")
        // A second heartbeat of a reachable neuron is no transition.
        yield* heartbeat(url, reg.registration_id, reg.bearer_token)
        assert.strictEqual((yield* alertLines(dataDir)).length, 2)
        assert.deepInclude((yield* call(url, "GET", "/stats")).body, { reachable_neurons: 1, down_neurons: 0 })
        // Heartbeats keep it alive: every 10 s for a minute, no alert.
        for (let s = 35; s <= 85; s += 10) {
          yield* at(monitor, s)
          yield* heartbeat(url, reg.registration_id, reg.bearer_token)
        }
        assert.strictEqual((yield* alertLines(dataDir)).length, 2)
      }))

    it.scoped("the sweep period follows the shortest registered interval, and each neuron its own interval", () =>
      Effect.gen(function*() {
        const { dataDir, monitor, url } = yield* startRegistryWithServices({ store })
        yield* register(url, 1) // 60 s
        yield* register(url, 2, { extra: { heartbeat_interval_s: 2 } }) // sweeps every second now
        yield* at(monitor, 5)
        const lines = yield* alertLines(dataDir)
        // Only the 2-second neuron is down (5 > 4); the 60-second one is fine.
        assert.deepStrictEqual(lines.map((l) => [l.alert_type, l.organization_npi]), [["neuron_down", npi(2)]])
        yield* at(monitor, 7)
        assert.deepStrictEqual((yield* alertLines(dataDir)).map((l) => l.alert_type), [
          "neuron_down",
          "neuron_deregistered"
        ])
      }))

    it.scoped("after a restart the sweep judges by the stored heartbeat times", () =>
      Effect.gen(function*() {
        const dataDir = yield* Sqlite.makeTempDir("axon-")
        const database = yield* databaseFor(store)
        const first = yield* Scope.make()
        const { url } = yield* startRegistryWithServices({ ...database, dataDir }).pipe(Scope.extend(first))
        const quiet = yield* register(url, 1, { extra: { heartbeat_interval_s: 10 } })
        const lively = yield* register(url, 2, { extra: { heartbeat_interval_s: 10 } })
        yield* TestClock.setTime(8_000)
        yield* heartbeat(url, lively.registration_id, lively.bearer_token) // kept by the group commit at stop
        yield* Scope.close(first, Exit.void)
        // Stopped until 31 s of clock time: "quiet" last beat at 0 s, "lively" at 8 s.
        yield* TestClock.setTime(31_000)
        const second = yield* startRegistryWithServices({ ...database, dataDir })
        yield* at(second.monitor, 35) // the first sweep after the restart
        const lines = yield* alertLines(dataDir)
        assert.deepStrictEqual(lines.map((l) => [l.alert_type, l.registration_id]), [
          ["neuron_deregistered", quiet.registration_id],
          ["neuron_down", lively.registration_id]
        ])
        assert.strictEqual(lines[1].last_seen, "1970-01-01T00:00:08.000Z")
      }))
  })
}

describe("HeartbeatMonitor alert file", () => {
  it.scoped(
    "an alert file left with a torn last line (the registry killed in the middle of an append): the next alert starts on its own line and is served by GET /alerts",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* Sqlite.makeTempDir("axon-")
        const torn = `{"alert_type":"neuron_down","registration_id":"0a`
        yield* Effect.flatMap(
          FileSystem.FileSystem,
          (fs) => fs.writeFileString(`${dataDir}/alerts-19700101.jsonl`, torn)
        ).pipe(
          Effect.orDie,
          Effect.provide(NodeContext.layer)
        )
        const { monitor, url } = yield* startRegistryWithServices({ dataDir })
        const reg = yield* register(url, 1)
        yield* at(monitor, 150)
        const text = yield* Effect.flatMap(
          FileSystem.FileSystem,
          (fs) => fs.readFileString(`${dataDir}/alerts-19700101.jsonl`)
        ).pipe(Effect.orDie, Effect.provide(NodeContext.layer))
        const lines = text.split("\n")
        assert.strictEqual(lines[0], torn)
        assert.deepInclude(JSON.parse(lines[1]!), { alert_type: "neuron_down", registration_id: reg.registration_id })
        const served = (yield* call(url, "GET", "/alerts")).body.alerts
        assert.deepStrictEqual(served.map((a: any) => [a.alert_type, a.registration_id]), [[
          "neuron_down",
          reg.registration_id
        ]])
      })
  )
})
