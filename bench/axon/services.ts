/**
 * The registry's services on a PostgreSQL database, in this process (no HTTP): what the sweep measurement and the
 * plans drive, so they run exactly the statements the registry runs.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Statement from "@effect/sql/Statement"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as AxonRegistry from "../../src/registry/AxonRegistry.js"

/** Builds the registry's services on `url`; `close` releases them. */
export const services = async (
  url: string,
  /** A statement transformer for every fiber of the services, those they fork at start (a group commit's writer) too. */
  transformer?: Statement.Statement.Transformer
) => {
  const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "axon-bench-services-"))
  const scope = Effect.runSync(Scope.make())
  const layer = AxonRegistry.layerServices({
    dataDir,
    databaseUrl: Option.some(Redacted.make(url)),
    enrollmentToken: Option.none()
  }).pipe(
    Layer.provide(Logger.minimumLogLevel(LogLevel.Error)),
    Layer.provide(transformer === undefined ? Layer.empty : Statement.setTransformer(transformer))
  )
  const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
  return {
    /** Runs an effect that needs the registry's services. */
    run: <A, E>(effect: Effect.Effect<A, E, Layer.Layer.Success<typeof layer> | SqlClient.SqlClient>) =>
      Effect.runPromise(effect.pipe(Effect.provide(context), Logger.withMinimumLogLevel(LogLevel.Error))),
    get: <I, S>(tag: Context.Tag<I, S>) => Context.get(context as Context.Context<I>, tag),
    close: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      Fs.rmSync(dataDir, { recursive: true, force: true })
    }
  }
}
