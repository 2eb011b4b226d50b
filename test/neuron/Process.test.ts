/**
 * `pnpm start` as a managed process (what it runs: `node scripts/build.mjs` once, then `node --enable-source-maps
 * dist/main.js` as a child process, configured by environment only): a restart on the same data folder keeps the
 * registration, SIGTERM (or Ctrl-C, which arrives twice under pnpm) leaves the health file `stopped`, and a bad
 * variable stops the process with one line naming it.
 */
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { call, CLINIC, freePort, readHealthFile, readRecords } from "../support/neuron.js"
import { build, type Child, healthy, spawnMain } from "../support/process.js"
import { startRegistry } from "../support/registry.js"

// `pnpm start` builds dist/ first (a fraction of a second), then runs the bundle under plain node.
beforeAll(build)

describe("pnpm start (a child process)", () => {
  it.scopedLive(
    "restart without a second registration: a new process on the same data folder resumes the same registration_id, and SIGTERM (or Ctrl-C relayed twice, as under pnpm) leaves the health file stopped",
    () =>
      Effect.gen(function*() {
        const registry = yield* startRegistry()
        const dataDir = yield* Sqlite.makeTempDir("neuron-process-")
        const run = Effect.fnUntraced(function*(stop: (child: Child) => Effect.Effect<void>) {
          const port = yield* freePort
          const child = yield* spawnMain({
            NEURON_DATA_DIR: dataDir,
            NEURON_PORT: String(port),
            AXON_REGISTRY_URL: registry.url,
            NEURON_ORGANIZATION_NPI: CLINIC.npi,
            NEURON_ORGANIZATION_NAME: CLINIC.name
          })
          const url = `http://127.0.0.1:${port}`
          yield* healthy(url)
          const status = (yield* call(url, "GET", "/v1/status")).body
          assert.deepInclude(yield* readHealthFile(dataDir), { status: "healthy", registration: "registered" })
          yield* stop(child)
          const code = yield* child.exit
          assert.strictEqual(code, 0, child.output().stderr)
          assert.deepInclude(yield* readHealthFile(dataDir), {
            status: "stopped",
            registration: "registered",
            next_attempt_at: null
          })
          assert.include(child.output().stdout, "Neuron started")
          return status.registration_id as string
        })
        const first = yield* run((child) => child.signal("SIGTERM"))
        // Ctrl-C on `pnpm start`: the terminal signals the process, and pnpm relays the same signal to it a moment
        // later, while it is stopping (src/process/SignalGuard.ts keeps that second one from killing it half-way).
        const second = yield* run((child) =>
          child.signal("SIGINT").pipe(Effect.zipRight(child.stopping), Effect.zipRight(child.signal("SIGINT")))
        )
        assert.strictEqual(second, first)
        const neurons = (yield* call(registry.url, "GET", `/v1/neurons?organization_npi=${CLINIC.npi}`)).body.neurons
        assert.deepStrictEqual(neurons.map((n: any) => n.registration_id), [first])
        const records = yield* readRecords(dataDir)
        assert.deepStrictEqual(records.events, ["RegistrationStarted", "Registered"])
        assert.isTrue(records.verification.ok)
      })
  )

  it.scopedLive(
    "config errors: a bad variable (NEURON_PORT=abc; AXON_REGISTRY_URL without NEURON_ORGANIZATION_NPI) exits non-zero with one line naming the variable",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* Sqlite.makeTempDir("neuron-process-")
        const cases = [
          [{ NEURON_PORT: "abc" }, "NEURON_PORT"],
          [{ AXON_REGISTRY_URL: "http://127.0.0.1:9" }, "NEURON_ORGANIZATION_NPI"]
        ] as const
        const results = yield* Effect.forEach(
          cases,
          ([env]) =>
            Effect.gen(function*() {
              const child = yield* spawnMain({ NEURON_DATA_DIR: dataDir, ...env })
              const code = yield* child.exit
              return { code, ...child.output() }
            }),
          { concurrency: "unbounded" }
        )
        for (const [i, [, variable]] of cases.entries()) {
          const { code, stderr, stdout } = results[i]!
          assert.notStrictEqual(code, 0)
          assert.isNotNull(code)
          const lines = (stdout + stderr).split("\n").filter((l) => l.trim() !== "")
          assert.strictEqual(lines.length, 1, stdout + stderr)
          assert.match(lines[0]!, new RegExp(`^neuron: configuration error: ${variable}: `))
        }
        // Nothing started: no health file claims anything.
        assert.isNull(yield* readHealthFile(dataDir))
      })
  )
})
