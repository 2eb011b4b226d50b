/**
 * The Neuron as users run it, as a child process: `node --enable-source-maps dist/main.js` (what `pnpm start` runs
 * after `node scripts/build.mjs`), configured by environment only, killed at the end of the scope if still running.
 * Shared by the process, crash and command-line tests.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ChildProcess from "node:child_process"
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

/**
 * Starts `node --enable-source-maps dist/main.js` (as `pnpm start` does) with only `env` (plus PATH and HOME:
 * nothing from this test's own environment), killed at the end of the scope if still running.
 */
export const spawnMain = (env: Record<string, string>) =>
  Effect.gen(function*() {
    const exited = yield* Deferred.make<number | null>()
    const stopping = yield* Deferred.make<void>()
    let stdout = ""
    let stderr = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = ChildProcess.spawn(process.execPath, ["--enable-source-maps", "dist/main.js"], {
          cwd: root,
          env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
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
 * Waits (bounded: a start is slow on a busy machine) for `/health` to say healthy. Each request has its
 * own time limit: the server listens a moment before its handler is attached, and a request in that window waits
 * for Node's request time-out.
 */
export const healthy = (url: string) =>
  waitFor(
    "the process to be healthy",
    Effect.map(
      Effect.promise(() =>
        fetch(url + "/health", { signal: AbortSignal.timeout(1_000) }).then((r) => r.json(), () => null)
      ),
      (body: any) => (body?.status === "healthy" ? Option.some(body) : Option.none())
    ),
    30_000
  )
