/**
 * Disk faults (issue 10; PROTOCOL.md section 3): a write the Neuron cannot store answers
 * `503 {"error":{"code":"STORAGE_UNAVAILABLE",...}}` and stores nothing half-way, the process keeps serving and
 * beating, and the same write succeeds once the cause is gone. The database full (its own connection's
 * `max_page_count`, as a small disk would), another process holding the write lock (a bounded wait while `/health`
 * still answers, nothing corrupted), and a health file that cannot be written (logged; the next write succeeds).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { HEALTH_FILE } from "../../src/health/NeuronHealth.js"
import { holdWriteLock } from "../support/lockHolder.js"
import {
  call,
  captureLogs,
  npiOf,
  readHealthFile,
  readRecords,
  type RunningNeuron,
  startNeuron,
  waitFor,
  waitUntil
} from "../support/neuron.js"
import { startRegistry } from "../support/registry.js"

const TIMING = { heartbeatInterval: "1 second", backoffBase: "50 millis", backoffCeiling: "200 millis" } as const

const provider = (n: number) => ({ provider_npi: npiOf(n), provider_name: `Dr. Number ${n}`, provider_types: ["md"] })

/** Starts a registry and a Neuron (its log lines captured) and waits until it is healthy. */
const startHealthy = (logs: ReturnType<typeof captureLogs>) =>
  Effect.gen(function*() {
    const registry = yield* startRegistry()
    const neuron = yield* startNeuron({ registryUrls: [registry.url], overrides: TIMING }).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, logs.logger)),
      Logger.withMinimumLogLevel(LogLevel.All)
    )
    yield* waitUntil("healthy", Effect.map(call(neuron.url, "GET", "/health"), (a) => a.body?.status === "healthy"))
    return { registry, neuron }
  })

/** The health file's heartbeat after `since` (ISO), healthy: the heartbeat went on. */
const beatAfter = (neuron: RunningNeuron, since: string) =>
  waitUntil(
    "a heartbeat after the fault",
    Effect.map(readHealthFile(neuron.dataDir), (h) =>
      h?.status === "healthy" && typeof h.last_heartbeat_at === "string" && h.last_heartbeat_at > since)
  )

/** What a 503 for a storage fault looks like: the contract's body, nothing of SQLite or SQL in it. */
const assertUnavailable = (answer: { status: number; body: any; text: string }, says: string) => {
  assert.strictEqual(answer.status, 503, answer.text)
  assert.deepStrictEqual(Object.keys(answer.body), ["error"])
  assert.deepStrictEqual(Object.keys(answer.body.error), ["code", "message"])
  assert.strictEqual(answer.body.error.code, "STORAGE_UNAVAILABLE")
  assert.include(answer.body.error.message, says)
  assert.notMatch(answer.text, /SQLITE|INSERT|UPDATE|SELECT|stack/i)
}

/** Nothing of provider `npi` anywhere: its row, an event, an audit entry; the audit chain sound. */
const assertNothingOf = (dataDir: string, npi: string) =>
  Effect.gen(function*() {
    const records = yield* readRecords(dataDir)
    assert.notInclude(records.providers.map((p) => p.npi), npi)
    assert.isFalse(records.eventRows.some((e) => String(e.payload).includes(npi)), "no event for it")
    assert.isFalse(records.auditRows.some((a) => String(a.subject) === npi), "no audit entry for it")
    assert.isTrue(records.verification.ok)
    // Every event has its audit entry: no transaction was cut in the middle.
    assert.strictEqual(
      records.auditRows.filter((a) => String(a.action).startsWith("lifecycle.")).length,
      records.events.length
    )
  })

const integrity = (neuron: RunningNeuron) =>
  Effect.map(
    neuron.sql<{ integrity_check: string }>`PRAGMA integrity_check`,
    (rows) => rows.map((r) => r.integrity_check)
  )

describe("Disk faults: the database full, locked by another process, the health file unwritable", () => {
  it.scopedLive(
    "the database full: an admin write (POST /v1/providers) answers 503 STORAGE_UNAVAILABLE and writes nothing half-way; /health answers and the heartbeat goes on; the same write succeeds once there is room",
    () => {
      const logs = captureLogs()
      return Effect.gen(function*() {
        const { neuron } = yield* startHealthy(logs)
        assert.strictEqual((yield* call(neuron.url, "POST", "/v1/providers", { body: provider(1) })).status, 201)

        // The database may not grow any more: as a full disk, for this connection (the Neuron's only one).
        const [{ page_count }] = yield* neuron.sql<{ page_count: number }>`PRAGMA page_count`
        yield* neuron.sql.unsafe(`PRAGMA max_page_count = ${page_count}`)
        // Writes fit in the pages' free room for a while; keep adding until the database is full.
        let refused: { readonly n: number; readonly answer: any } | undefined
        for (let n = 2; n < 400 && refused === undefined; n++) {
          const answer = yield* call(neuron.url, "POST", "/v1/providers", { body: provider(n) })
          if (answer.status === 503) refused = { n, answer }
          else assert.oneOf(answer.status, [201, 202], answer.text)
        }
        assert.isDefined(refused, "the database filled up")
        assertUnavailable(refused!.answer, "full")
        const full = new Date().toISOString()
        yield* assertNothingOf(neuron.dataDir, npiOf(refused!.n))

        // The Neuron keeps serving and beating.
        const health = yield* call(neuron.url, "GET", "/health")
        assert.strictEqual(health.status, 200)
        yield* beatAfter(neuron, full)
        // The same write is refused again while the database is full, and nothing is left of it.
        assertUnavailable(yield* call(neuron.url, "POST", "/v1/providers", { body: provider(refused!.n) }), "full")

        // Room again: the same request now succeeds.
        yield* neuron.sql.unsafe("PRAGMA max_page_count = 1073741823")
        const again = yield* call(neuron.url, "POST", "/v1/providers", { body: provider(refused!.n) })
        assert.strictEqual(again.status, 201, again.text)
        const records = yield* readRecords(neuron.dataDir)
        assert.include(records.providers.map((p) => p.npi), npiOf(refused!.n))
        assert.isTrue(records.verification.ok)
        assert.deepStrictEqual(yield* integrity(neuron), ["ok"])
        assert.deepStrictEqual(logs.lines().filter((l) => l.includes("unexpected")), [])
      })
    }
  )

  it.scopedLive(
    "another process holding the database's write lock: POST and DELETE /v1/providers (and POST /v1/api-keys) wait (bounded) then answer 503 STORAGE_UNAVAILABLE; /health answers during the wait (the event loop is not frozen); nothing corrupted (integrity_check); both succeed once the lock is released",
    () => {
      const logs = captureLogs()
      return Effect.gen(function*() {
        const { neuron } = yield* startHealthy(logs)
        assert.strictEqual((yield* call(neuron.url, "POST", "/v1/providers", { body: provider(1) })).status, 201)

        const lock = yield* holdWriteLock(Path.join(neuron.dataDir, "neuron.db"))
        const adding = yield* Effect.fork(call(neuron.url, "POST", "/v1/providers", { body: provider(2) }))
        // While the write waits for the lock, the Neuron answers: /health comes back before the write does.
        const health = yield* call(neuron.url, "GET", "/health")
        assert.strictEqual(health.status, 200)
        assert.isTrue(Option.isNone(yield* Fiber.poll(adding)), "the write is still waiting when /health answers")
        const lockedAt = new Date().toISOString()
        assertUnavailable(yield* Fiber.join(adding), "locked by another process")
        assertUnavailable(yield* call(neuron.url, "DELETE", `/v1/providers/${npiOf(1)}`), "locked by another process")
        const key = { name: "dashboard", scope: "read" }
        assertUnavailable(yield* call(neuron.url, "POST", "/v1/api-keys", { body: key }), "locked by another process")
        // A read does not need the lock (WAL): the provider list answers.
        const listed = yield* call(neuron.url, "GET", "/v1/providers")
        assert.deepStrictEqual(listed.body.providers.map((p: any) => [p.provider_npi, p.status]), [[
          npiOf(1),
          "registered"
        ]])

        // The heartbeat went on meanwhile (the registry kept hearing from the Neuron: still the same registration).
        yield* beatAfter(neuron, lockedAt)
        yield* lock.release
        yield* assertNothingOf(neuron.dataDir, npiOf(2))
        assert.notInclude((yield* readRecords(neuron.dataDir)).events, "RegistrationLost")
        assert.deepStrictEqual(yield* integrity(neuron), ["ok"])
        assert.strictEqual((yield* call(neuron.url, "POST", "/v1/providers", { body: provider(2) })).status, 201)
        assert.strictEqual((yield* call(neuron.url, "DELETE", `/v1/providers/${npiOf(1)}`)).status, 204)
        assert.strictEqual((yield* call(neuron.url, "POST", "/v1/api-keys", { body: key })).status, 201)
        const since = new Date().toISOString()
        yield* beatAfter(neuron, since)
        assert.isTrue((yield* readRecords(neuron.dataDir)).verification.ok)
        assert.deepStrictEqual(yield* integrity(neuron), ["ok"])
        assert.deepStrictEqual(logs.lines().filter((l) => l.includes("unexpected")), [])
      })
    }
  )

  it.scopedLive(
    "the health file cannot be written (a folder in its place): logged, the Neuron keeps serving (/health, admin writes), and the next write succeeds once the cause is gone",
    () => {
      const logs = captureLogs()
      return Effect.gen(function*() {
        const { neuron } = yield* startHealthy(logs)
        const file = Path.join(neuron.dataDir, HEALTH_FILE)
        Fs.rmSync(file)
        Fs.mkdirSync(Path.join(file, "in-the-way"), { recursive: true })

        yield* waitUntil(
          "the failed write logged",
          Effect.sync(() => logs.lines().some((l) => l.includes("health file not written")))
        )
        const health = yield* call(neuron.url, "GET", "/health")
        assert.deepInclude(health.body, { status: "healthy", registration: "registered" })
        assert.strictEqual((yield* call(neuron.url, "POST", "/v1/providers", { body: provider(3) })).status, 201)

        Fs.rmSync(file, { recursive: true })
        const gone = new Date().toISOString()
        const written = yield* waitFor(
          "the health file written again",
          Effect.map(
            readHealthFile(neuron.dataDir),
            (h) => h !== null && h.last_heartbeat_at > gone ? Option.some(h) : Option.none()
          )
        )
        assert.strictEqual(written.status, "healthy")
        assert.isTrue(Fs.statSync(file).isFile())
        // No temporary file left behind by the failed writes (one being written now comes and goes).
        yield* waitUntil(
          "no temporary file left",
          Effect.sync(() => Fs.readdirSync(neuron.dataDir).every((f) => !f.endsWith(".tmp")))
        )
      })
    }
  )
})
