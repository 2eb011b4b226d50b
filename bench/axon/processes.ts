/**
 * The processes of `pnpm bench axon`: registry instances as `pnpm start:axon` runs them (`node
 * --enable-source-maps dist/neuron.js axon`, configured by `AXON_*`, logs to /dev/null), the bare baseline
 * (`bare.ts`), and the databases they start on (the registry's own migrations, so both have the same schema).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { type ChildProcess, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { migrations } from "../../src/registry/migrations.js"
import * as Postgres from "../../src/sql/Postgres.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { freePort } from "../../test/support/postgresServer.js"

/** The repository's root folder (the registry runs from its `dist/`). */
export const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../..")

/** A started server process and its URL. */
export interface Server {
  readonly child: ChildProcess
  readonly url: string
}

const children = new Set<ChildProcess>()

/** Kills whatever is still running (on the way out, even after a failure). */
export const killAll = () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL")
}

// node:http rather than fetch: a fresh connection each time, closed after the answer.
const healthOf = (url: string) =>
  new Promise<string>((resolve) => {
    const request = Http.get(`${url}/health`, { agent: false, timeout: 2_000 }, (response) => {
      response.resume()
      resolve(String(response.statusCode))
    })
    request.on("timeout", () => request.destroy(new Error("time-out")))
    request.on("error", (error) => resolve(error.message))
  })

const waitForHealth = async (url: string, child: ChildProcess) => {
  const started = Date.now()
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${url}: the process exited with ${child.exitCode}`)
    const status = await healthOf(url)
    if (status === "200") return
    if (Date.now() - started > 60_000) throw new Error(`${url}: not healthy within 60 s (last: ${status})`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Starts one registry instance: SQLite in `dataDir`, or PostgreSQL at `databaseUrl`. */
export const startRegistry = async (options: {
  readonly dataDir: string
  readonly databaseUrl?: string | undefined
  /** A folder for `--cpu-prof` profiles of the registry, when wanted. */
  readonly profileDir?: string | undefined
}): Promise<Server> => {
  const port = await freePort()
  const profile = options.profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${options.profileDir}`]
  // Logs go to a file (as under a service manager); its tail explains a start that fails.
  Fs.mkdirSync(options.dataDir, { recursive: true })
  const logFile = Path.join(options.dataDir, "registry.log")
  const log = Fs.openSync(logFile, "a")
  const child = spawn(process.execPath, ["--enable-source-maps", ...profile, "dist/neuron.js", "axon"], {
    cwd: root,
    stdio: ["ignore", log, log],
    env: {
      ...process.env,
      AXON_HOST: "127.0.0.1",
      AXON_PORT: String(port),
      AXON_DATA_DIR: options.dataDir,
      AXON_DATABASE_URL: options.databaseUrl ?? "",
      AXON_ENROLLMENT_TOKEN: ""
    }
  })
  Fs.closeSync(log)
  children.add(child)
  const url = `http://127.0.0.1:${port}`
  await waitForHealth(url, child).catch((error) => {
    throw new Error(`${error.message}\n${Fs.readFileSync(logFile, "utf8").slice(-2000)}`)
  })
  return { child, url }
}

/** Starts the bare baseline on SQLite (`target` a file) or PostgreSQL (`target` a URL). */
export const startBare = (kind: "sqlite" | "pg", target: string): Promise<Server> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", Path.join(root, "bench/axon/bare.ts"), kind, target], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"]
    })
    children.add(child)
    child.once("exit", (code) => reject(new Error(`bare baseline exited with ${code}`)))
    child.stdout!.once("data", (data: Buffer) => {
      const { port } = JSON.parse(data.toString("utf8"))
      resolve({ child, url: `http://127.0.0.1:${port}` })
    })
  })

/** CPU time (user + system, ms) the servers' processes have used so far, from /proc (Linux). */
export const cpuMs = (servers: ReadonlyArray<Server>): number =>
  servers.reduce((sum, server) => {
    const fields = Fs.readFileSync(`/proc/${server.child.pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second).
    return sum + (Number(fields[11]) + Number(fields[12])) * 10
  }, 0)

/** Stops a server the way an operator would (SIGTERM: a clean stop), and waits for it. */
export const stop = (server: Server) =>
  new Promise<void>((resolve) => {
    server.child.removeAllListeners("exit")
    if (server.child.exitCode !== null) return resolve()
    server.child.once("exit", () => resolve())
    server.child.kill("SIGTERM")
  })

/** Creates `file` with the registry's schema (for the SQLite baseline). */
export const migrateSqlite = (file: string) =>
  Effect.runPromise(Effect.scoped(Layer.build(Sqlite.layer({ filename: file, migrations }))))

/** Creates the registry's schema in the database at `url` (for the PostgreSQL baseline). */
export const migratePg = (url: string) =>
  Effect.runPromise(Effect.scoped(Layer.build(Postgres.layer({ url: Redacted.make(url), migrations }))))
