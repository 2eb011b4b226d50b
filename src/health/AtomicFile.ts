/**
 * Replace a file so that a reader sees the old contents or the new, never a part, and a power cut after the call
 * returns keeps the new: temporary file in the same folder, write, fsync, rename over the target, fsync the folder.
 */
import type * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Effect from "effect/Effect"

// Unique within the process; the pid keeps two processes on one folder apart.
let counter = 0

const temporaryName = /^\.(.+)\.(\d+)\.\d+\.tmp$/

/** Whether a process with this id runs now (signal 0 checks without signalling; EPERM: it runs as another user). */
const isRunning = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Atomically replaces `path` with `content` (mode 0644 unless `options.mode`); on failure the temporary file is
 * removed.
 */
export const writeFileAtomic = (
  path: string,
  content: string | Uint8Array,
  options?: { readonly mode?: number }
): Effect.Effect<void, PlatformError.PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const paths = yield* Path.Path
    const dir = paths.dirname(path)
    const tmp = paths.join(dir, `.${paths.basename(path)}.${process.pid}.${++counter}.tmp`)
    const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content
    yield* Effect.scoped(Effect.gen(function*() {
      const file = yield* fs.open(tmp, { flag: "wx", mode: options?.mode ?? 0o644 })
      yield* file.writeAll(bytes)
      yield* file.sync
    })).pipe(
      Effect.zipRight(fs.rename(tmp, path)),
      Effect.onError(() => Effect.ignore(fs.remove(tmp)))
    )
    // The rename is durable only once the folder's entry is synced. Some platforms cannot open a folder: the file
    // is then still whole and in place, only its durability across a power cut is weaker.
    yield* Effect.scoped(Effect.flatMap(fs.open(dir, { flag: "r" }), (d) => d.sync)).pipe(
      Effect.catchAll((e) => Effect.logDebug("folder fsync not available", e.message))
    )
  }).pipe(Effect.uninterruptible)

/**
 * Removes the temporary files that `writeFileAtomic(path, ...)` calls of processes no longer running left behind:
 * a process killed between creating its temporary file and the rename (SIGKILL, a power cut) leaves one. Those of
 * running processes (this one, another on the same folder) are left alone. Answers how many it removed.
 */
export const removeStaleTemporaries = (
  path: string
): Effect.Effect<number, PlatformError.PlatformError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const paths = yield* Path.Path
    const dir = paths.dirname(path)
    const target = paths.basename(path)
    let removed = 0
    for (const name of yield* fs.readDirectory(dir)) {
      const match = temporaryName.exec(name)
      if (match === null || match[1] !== target) continue
      const pid = Number(match[2])
      if (pid === process.pid || isRunning(pid)) continue
      yield* fs.remove(paths.join(dir, name)).pipe(
        Effect.catchTag("SystemError", (e) => e.reason === "NotFound" ? Effect.void : Effect.fail(e))
      )
      removed++
    }
    return removed
  })
