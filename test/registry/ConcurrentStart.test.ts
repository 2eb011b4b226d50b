/**
 * Six registry instances started at the same moment from one install, as an operator's script or a service
 * manager would: each runs `pnpm start:axon` (the command line of package.json's script, run by `sh -c` as pnpm
 * runs it: `node scripts/build.mjs && exec node ... dist/neuron.js axon`), in a copy of the project without
 * `dist/` (a fresh clone), so the six builds race. Before the build was atomic, one of six exited right after it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { freePort } from "../support/http.js"
import { freshDatabase } from "../support/postgres.js"
import { projectCopy, registryReady, root, spawnProcess } from "../support/process.js"
import { call, heartbeat, npi, register } from "./support.js"

const script: string = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")).scripts["start:axon"]

describe("pnpm start:axon, six at once", () => {
  it.scopedLive(
    "six `pnpm start:axon` started at the same moment from one fresh install (no dist/: six builds race) on one " +
      "PostgreSQL: all six come up healthy and serve (a registration through one is found and beaten through " +
      "each), and dist/ holds the whole bundles and no temporary folder",
    () =>
      Effect.gen(function*() {
        assert.match(script, /^node scripts\/build\.mjs && exec node .*dist\/neuron\.js axon$/)
        const copy = yield* projectCopy
        const databaseUrl = yield* freshDatabase()
        const ports = yield* Effect.all([1, 2, 3, 4, 5, 6].map(() => freePort))
        const dataDirs = yield* Effect.all(ports.map(() => Sqlite.makeTempDir("axon-")))
        const instances = yield* Effect.all(
          ports.map((port, i) =>
            Effect.map(
              spawnProcess("sh", ["-c", script], {
                AXON_PORT: String(port),
                AXON_DATA_DIR: dataDirs[i]!,
                AXON_DATABASE_URL: databaseUrl
              }, { cwd: copy }),
              (child) => ({ url: `http://127.0.0.1:${port}`, child })
            )
          ),
          { concurrency: "unbounded" }
        )
        const exited = instances.map((i) => Effect.map(Effect.timeoutOption(i.child.exit, 0), (o) => o._tag))
        yield* Effect.all(instances.map((i) => registryReady(i.url, 90_000)), { concurrency: "unbounded" })
        assert.deepStrictEqual(yield* Effect.all(exited), instances.map(() => "None"), "every instance still runs")

        const reg = yield* register(instances[0]!.url, 1)
        for (const instance of instances) {
          const found = yield* call(instance.url, "GET", `/v1/registry/${npi(1)}`)
          assert.strictEqual(found.status, 200, instance.url)
          assert.strictEqual(found.body.organization_npi, npi(1))
          assert.strictEqual(found.body.status, "reachable")
          assert.strictEqual((yield* heartbeat(instance.url, reg.registration_id, reg.bearer_token)).status, 200)
        }
        for (const instance of instances) {
          const { stderr, stdout } = instance.child.output()
          assert.notMatch(stderr, /Error/, stderr)
          assert.include(stdout, "registry on PostgreSQL")
        }
        assert.deepStrictEqual(
          Fs.readdirSync(Path.join(copy, "dist")).sort(),
          ["axon.js", "axon.js.map", "main.js", "main.js.map", "neuron.js", "neuron.js.map"]
        )
      }),
    180_000
  )
})
