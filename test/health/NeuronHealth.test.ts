import * as NodeContext from "@effect/platform-node/NodeContext"
import * as FileSystem from "@effect/platform/FileSystem"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as ChildProcess from "node:child_process"
import { HEALTH_FILE, HealthSnapshot, NeuronHealth } from "../../src/health/NeuronHealth.js"
import { makeTempDir } from "../../src/sql/Sqlite.js"

const FIELDS = ["consecutive_failures", "last_heartbeat_at", "next_attempt_at", "registration", "status", "updated_at"]

/** The health file as written: parsed, with its exact keys checked against the contract. */
const readHealthFile = (dir: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(`${dir}/${HEALTH_FILE}`)
    const json = JSON.parse(text)
    assert.deepStrictEqual(Object.keys(json).sort(), FIELDS)
    return Schema.decodeUnknownSync(HealthSnapshot)(json, { onExcessProperty: "error" })
  })

const tmpFiles = (dir: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readDirectory(dir)).pipe(
    Effect.map((names) => names.filter((n) => n.endsWith(".tmp")))
  )

/** Builds the file-backed layer in its own scope, so a test can close it. */
const openHealth = (dataDir: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(NeuronHealth.layer({ dataDir }), scope)
    return { health: Context.get(context, NeuronHealth), scope }
  })

describe("NeuronHealth file", () => {
  it.scoped("after an update the file holds exactly the contract's fields, is valid JSON, and no .tmp file remains", () =>
    Effect.gen(function*() {
      const dir = `${yield* makeTempDir()}/data`
      const { health, scope } = yield* openHealth(dir)
      // The file exists from the start (a stale file from an earlier run is replaced at once).
      assert.deepInclude(yield* readHealthFile(dir), { status: "degraded", registration: "unregistered" })

      yield* TestClock.adjust(Duration.seconds(90))
      yield* health.recordSuccess({ registration: "registered" })
      yield* health.nextAttemptIn(Duration.seconds(60))
      assert.deepStrictEqual(yield* readHealthFile(dir), {
        status: "healthy",
        registration: "registered",
        last_heartbeat_at: "1970-01-01T00:01:30.000Z",
        consecutive_failures: 0,
        next_attempt_at: "1970-01-01T00:02:30.000Z",
        updated_at: "1970-01-01T00:01:30.000Z"
      })
      assert.deepStrictEqual(yield* readHealthFile(dir), yield* health.get)

      yield* TestClock.adjust(Duration.seconds(60))
      yield* health.recordFailure()
      yield* health.recordFailure({ next_attempt_at: "1970-01-01T00:02:40.000Z" })
      assert.deepInclude(yield* readHealthFile(dir), {
        status: "degraded",
        consecutive_failures: 2,
        last_heartbeat_at: "1970-01-01T00:01:30.000Z",
        next_attempt_at: "1970-01-01T00:02:40.000Z"
      })
      assert.deepStrictEqual(yield* tmpFiles(dir), [])
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped(
    "a temporary file left by a process killed in the middle of a write (SIGKILL) is removed at start; those of running processes and other files are kept",
    () =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        const dir = yield* makeTempDir()
        // A process id that ran and is gone now.
        const dead = ChildProcess.spawnSync(process.execPath, ["-e", ""]).pid
        const left = `.${HEALTH_FILE}.${dead}.7.tmp`
        const running = `.${HEALTH_FILE}.${process.ppid}.1.tmp`
        const other = `.other.json.${dead}.1.tmp`
        for (const name of [left, running, other]) yield* fs.writeFileString(`${dir}/${name}`, "{\"status\":\"hea")
        const { scope } = yield* openHealth(dir)
        assert.deepStrictEqual((yield* tmpFiles(dir)).sort(), [running, other].sort())
        assert.deepInclude(yield* readHealthFile(dir), { status: "degraded" })
        yield* Scope.close(scope, Exit.void)
      }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("says stopped once the layer's scope closes, keeps the rest, and ignores later updates", () =>
    Effect.gen(function*() {
      const dir = yield* makeTempDir()
      const { health, scope } = yield* openHealth(dir)
      yield* health.recordSuccess({ registration: "registered" })
      yield* health.nextAttemptIn(Duration.minutes(1))
      yield* Scope.close(scope, Exit.void)
      const stopped = yield* readHealthFile(dir)
      assert.deepInclude(stopped, { status: "stopped", registration: "registered", next_attempt_at: null })
      assert.isNotNull(stopped.last_heartbeat_at)
      // A late update from a fiber still winding down must not turn the file back to healthy.
      yield* health.recordSuccess()
      assert.strictEqual((yield* readHealthFile(dir)).status, "stopped")
      assert.strictEqual((yield* health.get).status, "stopped")
      assert.deepStrictEqual(yield* tmpFiles(dir), [])
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scoped("no secret field reaches the file, whatever the update carries", () =>
    Effect.gen(function*() {
      const dir = yield* makeTempDir()
      const { health, scope } = yield* openHealth(dir)
      yield* health.update({ registration: "registered", bearer_token: "tok-SECRET-1" } as any)
      const text = yield* Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(`${dir}/${HEALTH_FILE}`))
      assert.notInclude(text, "SECRET")
      assert.notInclude(text, "bearer")
      yield* readHealthFile(dir)
      yield* Scope.close(scope, Exit.void)
    }).pipe(Effect.provide(NodeContext.layer)))

  it.scopedLive(
    "a concurrent reader never sees a partial file while 300 updates are written",
    () =>
      Effect.gen(function*() {
        const dir = yield* makeTempDir()
        const fs = yield* FileSystem.FileSystem
        const { health, scope } = yield* openHealth(dir)
        let done = false
        const writer = Effect.forEach(
          Array.from({ length: 300 }, (_, i) => i),
          (i) =>
            i % 2 === 0
              ? health.recordFailure({ registration: `lost-${"x".repeat(i % 50)}` })
              : health.recordSuccess({ registration: "registered" }),
          { discard: true }
        ).pipe(Effect.ensuring(Effect.sync(() => done = true)))
        // Four readers keep the thread pool busy reading while the writer renames.
        const reader = Effect.gen(function*() {
          let reads = 0
          const bad: Array<string> = []
          while (!done) {
            const text = yield* fs.readFileString(`${dir}/${HEALTH_FILE}`)
            reads++
            try {
              Schema.decodeUnknownSync(HealthSnapshot)(JSON.parse(text), { onExcessProperty: "error" })
            } catch {
              bad.push(text)
            }
          }
          return { reads, bad }
        })
        const readers = yield* Effect.fork(Effect.all(Array.from({ length: 4 }, () => reader), { concurrency: 4 }))
        yield* writer
        const results = yield* Fiber.join(readers)
        assert.deepStrictEqual(results.flatMap((r) => r.bad), [])
        assert.isAbove(results.reduce((n, r) => n + r.reads, 0), 100)
        assert.deepStrictEqual(yield* tmpFiles(dir), [])
        yield* Scope.close(scope, Exit.void)
      }).pipe(Effect.provide(NodeContext.layer)),
    60_000
  )
})

describe("NeuronHealth as a SubscriptionRef", () => {
  it.scoped("changes streams the current snapshot, then each update, in order", () =>
    Effect.gen(function*() {
      const health = yield* NeuronHealth
      const seen = yield* Queue.unbounded<HealthSnapshot>()
      yield* health.changes.pipe(Stream.runForEach((s) => Queue.offer(seen, s)), Effect.forkScoped)
      // The first element is the current snapshot: from then on the subscriber misses nothing.
      const first = yield* Queue.take(seen)
      yield* health.recordFailure()
      yield* health.recordFailure()
      yield* health.recordSuccess({ registration: "registered" })
      const rest = yield* Effect.replicateEffect(Queue.take(seen), 3)
      const statuses = [first, ...rest].map((s) => [s.status, s.consecutive_failures] as const)
      assert.deepStrictEqual(statuses, [["degraded", 0], ["degraded", 1], ["degraded", 2], ["healthy", 0]])
    }).pipe(Effect.provide(NeuronHealth.layerMemory())))

  it.scoped("update takes a function of the current snapshot; recordSuccess resets the failure count", () =>
    Effect.gen(function*() {
      const health = yield* NeuronHealth
      yield* health.update((s) => ({ consecutive_failures: s.consecutive_failures + 5, registration: "conflict" }))
      assert.deepInclude(yield* health.get, { consecutive_failures: 5, registration: "conflict", status: "degraded" })
      yield* health.recordSuccess()
      assert.deepInclude(yield* health.get, { consecutive_failures: 0, registration: "conflict", status: "healthy" })
      yield* health.nextAttemptIn(null)
      assert.isNull((yield* health.get).next_attempt_at)
    }).pipe(Effect.provide(NeuronHealth.layerMemory({ registration: "registered" }))))
})

/** Runs the fixture process, waits until it is healthy, sends `signal`, and resolves with its exit code. */
const runUntilSignal = (dataDir: string, signal: NodeJS.Signals) =>
  Effect.async<number | null>((resume) => {
    const child = ChildProcess.spawn(
      "node_modules/.bin/tsx",
      [new URL("./fixtures/health-process.ts", import.meta.url).pathname, dataDir],
      { stdio: ["ignore", "pipe", "inherit"] }
    )
    child.stdout.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("ready")) child.kill(signal)
    })
    child.on("exit", (code) => resume(Effect.succeed(code)))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("NeuronHealth in a process", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it.scopedLive(`${signal} ends the process cleanly and the file then says stopped`, () =>
      Effect.gen(function*() {
        const dir = yield* makeTempDir()
        yield* runUntilSignal(dir, signal)
        assert.deepInclude(yield* readHealthFile(dir), { status: "stopped", registration: "registered" })
        assert.deepStrictEqual(yield* tmpFiles(dir), [])
      }).pipe(Effect.provide(NodeContext.layer)))
  }
})
