/**
 * What the bench's plain servers (server-baseline.ts, server-reference.ts) share: better-sqlite3 resolved from
 * @effect/sql-sqlite-node (it is not a direct dependency), and the IPC commands the bench sends them (`cpu`,
 * `memory`, `profile-start` / `profile-stop`, `heap-start` / `heap-stop`, `stop`). No Effect here.
 */
import * as Fs from "node:fs"
import type * as Http from "node:http"
import { Session } from "node:inspector/promises"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { memory } from "./common.js"

const root = Path.resolve(Path.dirname(fileURLToPath(import.meta.url)), "../..")

/** better-sqlite3's `Database` constructor, as @effect/sql-sqlite-node loads it. */
export const Database = createRequire(
  Path.join(Fs.realpathSync(Path.join(root, "node_modules", "@effect/sql-sqlite-node")), "package.json")
)("better-sqlite3")

/** Listens on loopback, tells the bench its port, and answers the bench's commands; `close` runs on `stop`. */
export const serve = (server: Http.Server, close: () => void) => {
  server.listen(0, "127.0.0.1", () => {
    const address = server.address() as { port: number }
    process.send!({ ready: true, port: address.port })
  })
  const gc = (globalThis as { gc?: () => void }).gc
  let session: Session | undefined
  process.on("message", async (message: any) => {
    // A CPU profile of this process between "start" and "stop" (BENCH_PROFILE), written to `message.file`.
    if (message.cmd === "profile-start") {
      session = new Session()
      session.connect()
      await session.post("Profiler.enable")
      await session.post("Profiler.start")
      process.send!({ ok: true })
    }
    if (message.cmd === "profile-stop" && session !== undefined) {
      const { profile } = await session.post("Profiler.stop")
      Fs.writeFileSync(message.file, JSON.stringify(profile))
      session.disconnect()
      process.send!({ ok: true })
    }
    // What this process allocates between "heap-start" and "heap-stop", collected or not (BENCH_PROFILE).
    if (message.cmd === "heap-start") {
      session = new Session()
      session.connect()
      await session.post("HeapProfiler.enable")
      await session.post("HeapProfiler.startSampling", {
        samplingInterval: 4096,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true
      })
      process.send!({ ok: true })
    }
    if (message.cmd === "heap-stop" && session !== undefined) {
      const { profile } = await session.post("HeapProfiler.stopSampling")
      Fs.writeFileSync(message.file, JSON.stringify(profile))
      session.disconnect()
      process.send!({ ok: true })
    }
    if (message.cmd === "cpu") process.send!(process.cpuUsage())
    if (message.cmd === "memory") {
      if (message.gc === true) gc?.()
      process.send!(memory())
    }
    if (message.cmd === "stop") {
      server.close()
      close()
      process.exit(0)
    }
  })
}
