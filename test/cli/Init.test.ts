/**
 * `neuron init`, `neuron start`, `neuron axon`, `neuron verify-audit`, `--help` and shell completions, run as the
 * built command (`dist/neuron.js`): init writes the commented configuration file into the data folder and keeps
 * an existing one unless --force; start runs the Neuron exactly as `pnpm start` did, reading that file; axon runs
 * the registry alone; verify-audit names the first broken audit entry.
 */
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, beforeAll, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { call, freePort, npiOf, readHealthFile, waitFor } from "../support/neuron.js"
import { build, healthy, runCommand, spawnMain } from "../support/process.js"
import { assertOneLineError, jsonOf, neuronWithToken } from "./support.js"

beforeAll(build)

// Each command is a new Node process: about a second on an idle machine, several under the load of a parallel run.
const COMMANDS_TIMEOUT = 300_000

/** Every setting of PROTOCOL.md section 5, as the contract lists them. */
const SECTION_5 = [
  "NEURON_ORGANIZATION_NPI",
  "NEURON_ORGANIZATION_NAME",
  "NEURON_ORGANIZATION_TYPE",
  "NEURON_HOST",
  "NEURON_PORT",
  "NEURON_PUBLIC_URL",
  "NEURON_DATA_DIR",
  "AXON_REGISTRY_URL",
  "AXON_ENROLLMENT_TOKEN",
  "NEURON_HEARTBEAT_INTERVAL_MS",
  "NEURON_BACKOFF_BASE_MS",
  "NEURON_BACKOFF_CEILING_MS",
  "NEURON_AXON_TIMEOUT_MS",
  "NEURON_AUTH_TIMEOUT_MS",
  "NEURON_MAX_CONCURRENT_HANDSHAKES",
  "NEURON_QUEUE_TIMEOUT_MS",
  "NEURON_MAX_PAYLOAD_BYTES",
  "NEURON_ADMIN_TOKEN",
  "NEURON_ALLOWED_ORIGINS",
  "AXON_HOST",
  "AXON_PORT",
  "AXON_DATA_DIR",
  "AXON_DATABASE_URL",
  "NEURON_API_RATE_LIMIT",
  "NEURON_MDNS"
]

/** The defaults of section 5 that are values, as the commented-out lines must show them. */
const DEFAULT_LINES = [
  "# NEURON_ORGANIZATION_TYPE=practice",
  "# NEURON_HOST=127.0.0.1",
  "# NEURON_PORT=8700",
  "# NEURON_DATA_DIR=./data",
  "# NEURON_HEARTBEAT_INTERVAL_MS=60000",
  "# NEURON_BACKOFF_BASE_MS=5000",
  "# NEURON_BACKOFF_CEILING_MS=240000",
  "# NEURON_AXON_TIMEOUT_MS=10000",
  "# NEURON_AUTH_TIMEOUT_MS=10000",
  "# NEURON_MAX_CONCURRENT_HANDSHAKES=1000",
  "# NEURON_QUEUE_TIMEOUT_MS=30000",
  "# NEURON_MAX_PAYLOAD_BYTES=65536",
  "# AXON_HOST=127.0.0.1",
  "# AXON_PORT=8600",
  "# NEURON_API_RATE_LIMIT=600",
  "# NEURON_MDNS=false"
]

const stripAnsi = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, "")

describe("neuron init, start, axon, verify-audit, --help (the built command)", () => {
  it.scopedLive(
    "neuron init writes a commented neuron.conf into the data folder (0600, every section 5 setting with its default, a new admin token), keeps an existing one without --force (exit 1), replaces it with --force",
    () =>
      Effect.gen(function*() {
        const dataDir = Path.join(yield* Sqlite.makeTempDir("neuron-init-"), "data")
        const file = Path.join(dataDir, "neuron.conf")
        const env = { NEURON_DATA_DIR: dataDir }
        const first = jsonOf(yield* runCommand(["init", "--json"], env))
        assert.deepStrictEqual(first, { config_file: file, admin_token_generated: true })
        assert.strictEqual(Fs.statSync(file).mode & 0o777, 0o600)
        const text = Fs.readFileSync(file, "utf8")
        for (const key of SECTION_5) {
          assert.match(text, new RegExp(`^(# )?${key}=`, "m"), `${key} is in the file`)
        }
        for (const line of DEFAULT_LINES) assert.include(text.split("\n"), line)
        const token = /^NEURON_ADMIN_TOKEN=([A-Za-z0-9_-]{43})$/m.exec(text)?.[1]
        assert.isDefined(token, "an active, generated admin token")
        // Every other line is a comment or blank: the file changes nothing else.
        const active = text.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("#"))
        assert.deepStrictEqual(active, [`NEURON_ADMIN_TOKEN=${token}`])

        const again = yield* runCommand(["init"], env)
        assertOneLineError(again, 1, /neuron\.conf already exists; it is kept \(neuron init --force replaces it\)$/)
        assert.strictEqual(Fs.readFileSync(file, "utf8"), text)

        const forced = yield* runCommand(["init", "--force"], env)
        assert.strictEqual(forced.code, 0, forced.stderr)
        assert.match(forced.stdout, /^wrote .*neuron\.conf/)
        const replaced = Fs.readFileSync(file, "utf8")
        assert.notStrictEqual(replaced, text)
        assert.notInclude(replaced, token!)
        assert.notInclude(forced.stdout + forced.stderr, /^NEURON_ADMIN_TOKEN=(.*)$/m.exec(replaced)![1]!)
        assert.strictEqual(Fs.statSync(file).mode & 0o777, 0o600)
      }),
    COMMANDS_TIMEOUT
  )

  it.scopedLive(
    "neuron start runs the Neuron as pnpm start did, reading neuron.conf from its data folder (port and admin token); neuron status reads the same file; SIGTERM stops it cleanly (exit 0, health file stopped)",
    () =>
      Effect.gen(function*() {
        const dataDir = yield* Sqlite.makeTempDir("neuron-start-")
        const env = { NEURON_DATA_DIR: dataDir }
        assert.strictEqual((yield* runCommand(["init"], env)).code, 0)
        const file = Path.join(dataDir, "neuron.conf")
        const port = yield* freePort
        const axonPort = yield* freePort
        Fs.writeFileSync(
          file,
          Fs.readFileSync(file, "utf8")
            .replace("# NEURON_PORT=8700", `NEURON_PORT=${port}`)
            .replace("# AXON_PORT=8600", `AXON_PORT=${axonPort}`)
        )
        const child = yield* spawnMain(env, ["dist/neuron.js", "start"])
        const url = `http://127.0.0.1:${port}`
        yield* healthy(url)
        // The file's token guards the admin API; the command finds it (and the port) in the same file.
        assert.strictEqual((yield* call(url, "GET", "/v1/status")).status, 401)
        const status = jsonOf(yield* runCommand(["status", "--json"], env))
        assert.strictEqual(status.url, url)
        assert.strictEqual(status.status.registration, "registered")
        assert.strictEqual(status.status.axon_url, `http://127.0.0.1:${axonPort}`)

        yield* child.signal("SIGTERM")
        assert.strictEqual(yield* child.exit, 0, child.output().stderr)
        assert.include(child.output().stdout, "Neuron started")
        assert.include(child.output().stdout, "Neuron stopping")
        assert.deepInclude(yield* readHealthFile(dataDir), { status: "stopped", registration: "registered" })
        // Stopped: the command says so, exit 2.
        assertOneLineError(yield* runCommand(["status"], env), 2, /no Neuron answers at/)
      }),
    COMMANDS_TIMEOUT
  )

  it.scopedLive(
    "neuron axon runs the Axon registry alone (as pnpm start:axon did): /health answers, SIGTERM stops it with exit 0",
    () =>
      Effect.gen(function*() {
        const port = yield* freePort
        const dataDir = yield* Sqlite.makeTempDir("axon-cli-")
        const child = yield* spawnMain({ AXON_PORT: String(port), AXON_DATA_DIR: dataDir }, ["dist/neuron.js", "axon"])
        const health = yield* waitFor(
          "the registry to answer /health",
          Effect.promise(() =>
            fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1_000) }).then(
              (r) => r.json() as Promise<any>,
              () => null
            )
          ).pipe(Effect.map((body) => Option.fromNullable(body?.status === "ok" ? body : null))),
          60_000
        )
        assert.strictEqual(health.status, "ok")
        assert.isTrue(Fs.existsSync(dataDir))
        yield* child.signal("SIGTERM")
        assert.strictEqual(yield* child.exit, 0, child.output().stderr)
      }),
    COMMANDS_TIMEOUT
  )

  it.scopedLive(
    "neuron verify-audit: exit 0 with the chain intact (--json parsed, text), exit 1 naming the first broken entry after a row is changed, and a missing database is one line",
    () =>
      Effect.gen(function*() {
        const { env, neuron } = yield* neuronWithToken()
        yield* neuron.neuron.addProvider({ provider_npi: npiOf(61), provider_name: "Dr. Ada Lovelace" })
        const [intact, intactText] = yield* Effect.all([
          runCommand(["verify-audit", "--json"], env),
          runCommand(["verify-audit"], env)
        ], { concurrency: "unbounded" })
        const verdict = jsonOf(intact)
        assert.isTrue(verdict.intact)
        assert.isAtLeast(verdict.entries, 2)
        assert.match(verdict.head, /^[0-9a-f]{64}$/)
        assert.strictEqual(intactText.code, 0, intactText.stderr)
        assert.strictEqual(intactText.stdout, `audit chain intact: ${verdict.entries} entries, head ${verdict.head}\n`)

        // Someone with the file edits entry 2 behind the Neuron's back (a second connection: WAL allows it while it
        // runs), dropping the trigger that keeps the log append-only for the program.
        yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          yield* sql`DROP TRIGGER audit_log_no_update`
          yield* sql`UPDATE audit_log SET details = '{"edited":true}' WHERE seq = 2`
        }).pipe(
          Effect.provide(SqliteClient.layer({ filename: Path.join(neuron.dataDir, "neuron.db") })),
          Effect.orDie
        )
        const [broken, brokenText] = yield* Effect.all([
          runCommand(["verify-audit", "--json"], env),
          runCommand(["verify-audit"], env)
        ], { concurrency: "unbounded" })
        assert.strictEqual(broken.code, 1, broken.stderr)
        assert.deepStrictEqual(JSON.parse(broken.stdout), {
          intact: false,
          broken_at: 2,
          reason: "hash does not match the entry's contents"
        })
        assert.strictEqual(brokenText.code, 1)
        assert.strictEqual(
          brokenText.stdout,
          "audit chain broken at entry 2: hash does not match the entry's contents\n"
        )

        const empty = yield* Sqlite.makeTempDir("neuron-nodb-")
        assertOneLineError(
          yield* runCommand(["verify-audit"], { ...env, NEURON_DATA_DIR: empty }),
          1,
          /no Neuron database at .*neuron\.db \(NEURON_DATA_DIR\)$/
        )
      }),
    COMMANDS_TIMEOUT
  )

  it.scopedLive(
    "--help on the command and on every subcommand (exit 0, its usage), and shell completions for bash, zsh and fish",
    () =>
      Effect.gen(function*() {
        const paths = [
          [],
          ["start"],
          ["init"],
          ["status"],
          ["provider"],
          ["provider", "add"],
          ["provider", "remove"],
          ["provider", "list"],
          ["relationships"],
          ["relationships", "list"],
          ["relationships", "terminate"],
          ["discover"],
          ["verify-audit"],
          ["api-key"],
          ["api-key", "create"],
          ["api-key", "list"],
          ["api-key", "revoke"],
          ["axon"]
        ]
        const helps = yield* Effect.forEach(paths, (path) => runCommand([...path, "--help"]), { concurrency: 4 })
        for (const [i, path] of paths.entries()) {
          const help = helps[i]!
          assert.strictEqual(help.code, 0, `${path.join(" ")}: ${help.stderr}`)
          const text = stripAnsi(help.stdout)
          assert.include(text, "USAGE")
          assert.match(text, new RegExp(`^\\$ ${path.at(-1) ?? "neuron"}`, "m"), path.join(" "))
          assert.include(text, "DESCRIPTION")
        }
        assert.include(stripAnsi(helps[5]!.stdout), "--type text...")
        const shells = yield* Effect.forEach(["bash", "zsh", "fish"], (shell) => runCommand(["--completions", shell]), {
          concurrency: "unbounded"
        })
        for (const completion of shells) {
          assert.strictEqual(completion.code, 0, completion.stderr)
          for (const word of ["neuron", "provider", "verify-audit", "api-key"]) assert.include(completion.stdout, word)
        }
      }),
    COMMANDS_TIMEOUT
  )
})
