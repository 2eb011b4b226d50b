/**
 * The Neuron as users run it, as a child process: `node --enable-source-maps dist/main.js` (what `pnpm start` runs
 * after `node scripts/build.mjs`), configured by environment only, killed at the end of the scope if still running.
 * Shared by the process, crash and command-line tests.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { freePort } from "./http.js"
import { waitFor } from "./neuron.js"

/** The project folder. */
export const root = new URL("../../", import.meta.url).pathname

/** `pnpm build`: `pnpm start` builds dist/ first (a fraction of a second), then runs the bundle under plain node. */
export const build = () => {
  ChildProcess.execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: root, stdio: "inherit" })
}

/** A running `node dist/main.js`. */
export interface Child {
  readonly exit: Effect.Effect<number | null>
  readonly output: () => { readonly stdout: string; readonly stderr: string }
  readonly signal: (signal: NodeJS.Signals) => Effect.Effect<void>
  /** Succeeds once the process has logged that it is stopping. */
  readonly stopping: Effect.Effect<void>
}

/** Only `env`, plus PATH and HOME: nothing from this test's own environment. */
const childEnv = (env: Record<string, string>) => ({
  PATH: process.env.PATH ?? "",
  HOME: process.env.HOME ?? "",
  ...env
})

/**
 * Starts `command args` in `cwd` (the project folder unless given) with only `env` (plus PATH and HOME: nothing
 * from this test's own environment), killed at the end of the scope if still running.
 */
export const spawnProcess = (
  command: string,
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  options?: { readonly cwd?: string }
) =>
  Effect.gen(function*() {
    const exited = yield* Deferred.make<number | null>()
    const stopping = yield* Deferred.make<void>()
    let stdout = ""
    let stderr = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = ChildProcess.spawn(command, args, {
          cwd: options?.cwd ?? root,
          env: childEnv(env),
          stdio: ["ignore", "pipe", "pipe"]
        })
        child.stdout.on("data", (chunk: Buffer) => {
          stdout += chunk.toString()
          if (stdout.includes("Neuron stopping")) Deferred.unsafeDone(stopping, Effect.void)
        })
        child.stderr.on("data", (chunk: Buffer) => void (stderr += chunk.toString()))
        child.on("exit", (code) => Deferred.unsafeDone(exited, Effect.succeed(code)))
        return child
      }),
      (child) => Effect.sync(() => child.exitCode === null && child.signalCode === null && child.kill("SIGKILL"))
    )
    return {
      exit: Deferred.await(exited),
      output: () => ({ stdout, stderr }),
      signal: (signal) => Effect.sync(() => void child.kill(signal)),
      stopping: Deferred.await(stopping)
    } satisfies Child
  })

/**
 * Starts `node --enable-source-maps dist/main.js` with only `env` (plus PATH and HOME: nothing from this test's
 * own environment), killed at the end of the scope if still running. `args` replaces `dist/main.js`:
 * `["dist/neuron.js", "start"]` is what `pnpm start` runs.
 */
export const spawnMain = (env: Record<string, string>, args: ReadonlyArray<string> = ["dist/main.js"]) =>
  spawnProcess(process.execPath, ["--enable-source-maps", ...args], env)

/** A registry process on a port and data folder of its own. */
export interface AxonInstance {
  readonly url: string
  readonly port: number
  readonly dataDir: string
  readonly child: Child
}

/**
 * One `node dist/axon.js` (what `pnpm start:axon` runs) on `databaseUrl` (PostgreSQL), on a free port and a fresh
 * data folder unless given (a restart passes the same ones), with `env` added.
 */
export const spawnAxon = (
  databaseUrl: string,
  options?: { readonly port?: number; readonly dataDir?: string; readonly env?: Record<string, string> }
) =>
  Effect.gen(function*() {
    const port = options?.port ?? (yield* freePort)
    const dataDir = options?.dataDir ?? (yield* Sqlite.makeTempDir("axon-"))
    const child = yield* spawnMain({
      AXON_PORT: String(port),
      AXON_DATA_DIR: dataDir,
      AXON_DATABASE_URL: databaseUrl,
      ...options?.env
    }, ["dist/axon.js"])
    return { url: `http://127.0.0.1:${port}`, port, dataDir, child } satisfies AxonInstance
  })

/** Waits (bounded, 60 s unless given) until the registry at `url` answers `/health` with 200. */
export const registryReady = (url: string, timeoutMs = 60_000) =>
  waitFor(
    `the registry at ${url} to be healthy`,
    Effect.map(
      Effect.promise(() => fetch(url + "/health", { signal: AbortSignal.timeout(1_000) }).catch(() => null)),
      (response) => (response?.status === 200 ? Option.some(true) : Option.none())
    ),
    timeoutMs
  )

/**
 * Waits (bounded, 30 s unless given: a start is slow on a busy machine) for `/health` to say healthy. Each request
 * has its own time limit: the server listens a moment before its handler is attached, and a request in that window
 * waits for Node's request time-out.
 */
export const healthy = (url: string, timeoutMs = 30_000) =>
  waitFor(
    "the process to be healthy",
    Effect.map(
      Effect.promise(() =>
        fetch(url + "/health", { signal: AbortSignal.timeout(1_000) }).then((r) => r.json(), () => null)
      ),
      (body: any) => (body?.status === "healthy" ? Option.some(body) : Option.none())
    ),
    timeoutMs
  )

/** What a finished command printed, and its exit code. */
export interface CommandResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `node ...args` to its end, with only `env` (plus PATH and HOME), in `cwd` (the project folder unless given),
 * and hands back its output and exit code.
 */
export const runNode = (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {},
  options?: { readonly cwd?: string }
): Effect.Effect<CommandResult> =>
  Effect.async<CommandResult>((resume) => {
    const child = ChildProcess.execFile(
      process.execPath,
      args,
      { cwd: options?.cwd ?? root, env: childEnv(env), timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null
        resume(Effect.succeed({ code, stdout, stderr }))
      }
    )
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

/**
 * Runs the built `neuron` command (`node dist/neuron.js ...args`, as the package's `bin` runs) to its end, with only
 * `env` (plus PATH and HOME), in `cwd` (the project folder unless given), and hands back its output and exit code.
 */
export const runCommand = (
  args: ReadonlyArray<string>,
  env: Record<string, string> = {},
  options?: { readonly cwd?: string }
): Effect.Effect<CommandResult> => runNode([`${root}dist/neuron.js`, ...args], env, options)

/**
 * A copy of the project in a temporary folder, as a fresh clone has it (no `dist/`): `src/`, `scripts/`,
 * package.json and tsconfig.json copied, `node_modules` a link to this install's. Removed with the scope. For the
 * tests of the build itself, which must not rewrite the `dist/` that other test files are running.
 */
export const projectCopy: Effect.Effect<string, never, Scope.Scope> = Effect.map(
  Sqlite.makeTempDir("neuron-copy-"),
  (dir) => {
    for (const entry of ["src", "scripts", "package.json", "tsconfig.json"]) {
      Fs.cpSync(Path.join(root, entry), Path.join(dir, entry), { recursive: true })
    }
    Fs.symlinkSync(Path.join(root, "node_modules"), Path.join(dir, "node_modules"), "dir")
    return dir + "/"
  }
)
