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
