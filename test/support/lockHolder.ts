/**
 * Another process holding a SQLite database's write lock: a child `node` with its own better-sqlite3 connection
 * in `BEGIN IMMEDIATE`, as a backup tool or a second program on the same file would. Released on request, and in
 * any case (killed) when the scope closes.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import { createRequire } from "node:module"
import { root } from "./process.js"

// better-sqlite3 is a dependency of the SQLite client, not of the project: resolve it from there.
const driver = createRequire(root + "node_modules/@effect/sql-sqlite-node/package.json").resolve("better-sqlite3")

const script = `
const Database = require(process.argv[1])
const db = new Database(process.argv[2])
db.pragma("busy_timeout = 10000")
db.exec("BEGIN IMMEDIATE")
process.stdout.write("locked\\n")
process.stdin.once("data", () => {
  db.exec("ROLLBACK")
  db.close()
  process.stdout.write("released\\n")
  process.exit(0)
})
`

/** A held lock: `release` lets go (and waits until the child has). */
export interface HeldLock {
  readonly release: Effect.Effect<void>
}

/** Takes `file`'s write lock in a child process; succeeds once the lock is held. */
export const holdWriteLock = (file: string) =>
  Effect.gen(function*() {
    const locked = yield* Deferred.make<void, Error>()
    const released = yield* Deferred.make<void>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = ChildProcess.spawn(process.execPath, ["-e", script, driver, file], {
          stdio: ["pipe", "pipe", "pipe"]
        })
        let out = ""
        let err = ""
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString()
          if (out.includes("locked\n")) Deferred.unsafeDone(locked, Effect.void)
          if (out.includes("released\n")) Deferred.unsafeDone(released, Effect.void)
        })
        child.stderr.on("data", (chunk: Buffer) => void (err += chunk.toString()))
        child.on("exit", (code) => {
          Deferred.unsafeDone(locked, Effect.fail(new Error(`the lock holder exited (${code}): ${err}`)))
          Deferred.unsafeDone(released, Effect.void)
        })
        return child
      }),
      (child) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
    )
    yield* Deferred.await(locked).pipe(Effect.orDie)
    return {
      release: Effect.zipRight(Effect.sync(() => child.stdin.write("release\n")), Deferred.await(released))
    } satisfies HeldLock
  })
