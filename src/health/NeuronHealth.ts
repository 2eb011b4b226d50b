/**
 * The Neuron's observable health (PROTOCOL.md section 4): a `SubscriptionRef<HealthSnapshot>` that other services
 * read and follow, mirrored to `<data dir>/neuron.health.json`.
 *
 * The file is written synchronously inside each update, under the ref's lock: when `update` returns, the file says
 * what the ref says, and files are written in the order of the updates. So a monitor never reads "healthy" after the
 * engine has recorded a failure. A write that fails (disk full) is logged and the ref still moves on; the next update
 * rewrites the whole file. When the layer's scope closes (SIGINT/SIGTERM through `NodeRuntime.runMain`, or a host
 * closing the layer) the file is rewritten with `status: "stopped"`, and later updates are ignored.
 */
import type * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { NeuronConfig } from "../config/NeuronConfig.js"
import { removeStaleTemporaries, writeFileAtomic } from "./AtomicFile.js"

/** The health file's name inside the data folder. */
export const HEALTH_FILE = "neuron.health.json"

/** The health file, exactly (no other field, no secret). `registration` is the lifecycle state. */
export const HealthSnapshot = Schema.Struct({
  status: Schema.Literal("healthy", "degraded", "stopped"),
  last_heartbeat_at: Schema.NullOr(Schema.String),
  updated_at: Schema.String,
  registration: Schema.String,
  consecutive_failures: Schema.Int.pipe(Schema.nonNegative()),
  next_attempt_at: Schema.NullOr(Schema.String)
})

/** @see HealthSnapshot */
export type HealthSnapshot = typeof HealthSnapshot.Type

/** What an update may change; `updated_at` is stamped from the Clock, `stopped` is set only on close. */
export interface HealthPatch {
  readonly status?: "healthy" | "degraded"
  readonly registration?: string
  readonly last_heartbeat_at?: string | null
  readonly consecutive_failures?: number
  readonly next_attempt_at?: string | null
}

/** The health service. */
export interface NeuronHealthService {
  /** The current snapshot. */
  readonly get: Effect.Effect<HealthSnapshot>
  /** The current snapshot, then every change. */
  readonly changes: Stream.Stream<HealthSnapshot>
  /** Applies a patch (or a function of the current snapshot); returns once the file is written. */
  readonly update: (patch: HealthPatch | ((current: HealthSnapshot) => HealthPatch)) => Effect.Effect<HealthSnapshot>
  /** A beat succeeded: healthy, `last_heartbeat_at` now, no failures, plus `patch`. */
  readonly recordSuccess: (patch?: HealthPatch) => Effect.Effect<HealthSnapshot>
  /** An attempt failed: degraded, one more consecutive failure, plus `patch`. */
  readonly recordFailure: (patch?: HealthPatch) => Effect.Effect<HealthSnapshot>
  /** Sets `next_attempt_at` to now + `delay` (null: none planned); fits `Schedule.tapOutput`. */
  readonly nextAttemptIn: (delay: Duration.DurationInput | null) => Effect.Effect<HealthSnapshot>
}

const isoNow = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms).toISOString())

/** Only the contract's fields, in the contract's order: nothing else can reach the file. */
const fileContents = (s: HealthSnapshot): string =>
  JSON.stringify(
    {
      status: s.status,
      last_heartbeat_at: s.last_heartbeat_at,
      updated_at: s.updated_at,
      registration: s.registration,
      consecutive_failures: s.consecutive_failures,
      next_attempt_at: s.next_attempt_at
    },
    null,
    2
  ) + "\n"

/**
 * The service over a `write` that mirrors each snapshot (the file, or nothing). Starts `degraded` (nothing has
 * answered yet) with the given registration state, writes that at once (replacing a stale file from an earlier
 * run), and writes `stopped` when the scope closes.
 */
export const make = (options: {
  readonly write: (snapshot: HealthSnapshot) => Effect.Effect<void>
  readonly registration?: string
}): Effect.Effect<NeuronHealthService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const initial: HealthSnapshot = {
      status: "degraded",
      last_heartbeat_at: null,
      updated_at: yield* isoNow,
      registration: options.registration ?? "unregistered",
      consecutive_failures: 0,
      next_attempt_at: null
    }
    const ref = yield* SubscriptionRef.make(initial)
    yield* options.write(initial)

    const transition = (f: (current: HealthSnapshot, now: string) => HealthSnapshot | undefined) =>
      SubscriptionRef.modifyEffect(ref, (current) =>
        Effect.gen(function*() {
          const next = f(current, yield* isoNow)
          if (next === undefined) return [current, current] as const
          yield* options.write(next)
          return [next, next] as const
        })).pipe(Effect.uninterruptible)

    const update = (patch: HealthPatch | ((current: HealthSnapshot) => HealthPatch)) =>
      transition((current, now) =>
        current.status === "stopped"
          ? undefined
          : { ...current, ...(typeof patch === "function" ? patch(current) : patch), updated_at: now }
      )

    yield* Effect.addFinalizer(() =>
      transition((current, now) => ({ ...current, status: "stopped", next_attempt_at: null, updated_at: now }))
    )

    return {
      get: SubscriptionRef.get(ref),
      changes: ref.changes,
      update,
      recordSuccess: (patch = {}) =>
        Effect.flatMap(isoNow, (now) =>
          update({ status: "healthy", last_heartbeat_at: now, consecutive_failures: 0, ...patch })),
      recordFailure: (patch = {}) =>
        update((current) => ({ status: "degraded", consecutive_failures: current.consecutive_failures + 1, ...patch })),
      nextAttemptIn: (delay) =>
        Effect.flatMap(Clock.currentTimeMillis, (ms) =>
          update({
            next_attempt_at: delay === null ? null : new Date(ms + Duration.toMillis(delay)).toISOString()
          }))
    } satisfies NeuronHealthService
  })

/** The health file's writer: atomic, and a failure is logged rather than raised. */
const fileWriter = (path: string) =>
  Effect.map(
    Effect.context<FileSystem.FileSystem | Path.Path>(),
    (context) => (snapshot: HealthSnapshot) =>
      writeFileAtomic(path, fileContents(snapshot)).pipe(
        Effect.catchAll((e) => Effect.logError("health file not written", e.message)),
        Effect.provide(context),
        Effect.annotateLogs({ service: "NeuronHealth", file: path })
      )
  )

/** The Neuron's health, observable and mirrored to `<data dir>/neuron.health.json`. */
export class NeuronHealth extends Context.Tag("neuron/NeuronHealth")<NeuronHealth, NeuronHealthService>() {
  /** With the health file in `dataDir` (created if missing). */
  static readonly layer = (options: {
    readonly dataDir: string
    readonly registration?: string
  }): Layer.Layer<NeuronHealth, PlatformError.PlatformError, FileSystem.FileSystem | Path.Path> =>
    Layer.scoped(
      NeuronHealth,
      Effect.gen(function*() {
        yield* Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeDirectory(options.dataDir, { recursive: true }))
        const path = (yield* Path.Path).join(options.dataDir, HEALTH_FILE)
        // A process killed in the middle of a write (SIGKILL, a power cut) left its temporary file behind.
        yield* removeStaleTemporaries(path).pipe(
          Effect.tap((n) =>
            n > 0 ? Effect.logInfo("removed a health file's temporary file left by a crash") : Effect.void
          ),
          Effect.catchAll((e) => Effect.logWarning("could not clean up the health file's temporary files", e.message)),
          Effect.annotateLogs({ service: "NeuronHealth", file: path })
        )
        const write = yield* fileWriter(path)
        return yield* make({ ...options, write })
      })
    )
  /** With the health file in `NeuronConfig`'s data folder. */
  static readonly layerFromConfig: Layer.Layer<
    NeuronHealth,
    PlatformError.PlatformError,
    NeuronConfig | FileSystem.FileSystem | Path.Path
  > = Layer.unwrapEffect(Effect.map(NeuronConfig, (config) => NeuronHealth.layer({ dataDir: config.dataDir })))
  /** In memory only, no file: for tests about something else. */
  static readonly layerMemory = (options: { readonly registration?: string } = {}): Layer.Layer<NeuronHealth> =>
    Layer.scoped(NeuronHealth, make({ ...options, write: () => Effect.void }))
}
