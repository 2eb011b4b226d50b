/**
 * `pnpm start`: the Neuron as a managed process. Configuration comes from the environment (PROTOCOL.md section 5,
 * and an optional NEURON_CONFIG_FILE); a bad value stops it with one line naming the variable. Without
 * AXON_REGISTRY_URL it embeds an Axon registry in the same process. SIGINT / SIGTERM end it cleanly: open
 * handshakes are closed with 1001, the health file says "stopped".
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import { describeConfigError, NeuronConfig } from "./config/NeuronConfig.js"
import * as NodeServer from "./http/NodeServer.js"
import { describeCause } from "./log/Causes.js"
import * as Neuron from "./Neuron.js"
import * as Tracing from "./observability/Tracing.js"
import * as SignalGuard from "./process/SignalGuard.js"
import * as AxonRegistry from "./registry/AxonRegistry.js"
import * as Sqlite from "./sql/Sqlite.js"
import { StorageUnavailable } from "./sql/StorageUnavailable.js"

const Main = Layer.unwrapEffect(
  Effect.gen(function*() {
    const settings = yield* NeuronConfig
    // First, before the embedded registry makes its folder inside it: a data folder that cannot be written is one
    // line naming it and the reason.
    yield* Sqlite.ensureWritableFolder(settings.dataDir)
    const embedded = settings.registryUrls.length === 0
    const registry = embedded
      ? AxonRegistry.layer({ dataDir: settings.axon.dataDir, enrollmentToken: settings.enrollmentToken }).pipe(
        Layer.provide(NodeServer.layer({ host: settings.axon.host, port: settings.axon.port }))
      )
      : Layer.empty
    const neuron = Neuron.layer.pipe(
      Layer.provide([Neuron.layerSqlite, NodeHttpClient.layerUndici, NodeServer.layer(settings)])
    )
    const announce = Layer.scopedDiscard(
      Effect.logInfo("Neuron started").pipe(
        Effect.annotateLogs({
          listening: `http://${settings.host}:${settings.port}`,
          public_url: settings.publicUrl,
          handshake: `${settings.publicUrl.replace(/^http/, "ws")}/ws/handshake`,
          data_dir: settings.dataDir,
          registry: embedded
            ? `embedded at http://${settings.axon.host}:${settings.axon.port} (data in ${settings.axon.dataDir})`
            : settings.registryUrls.join(", ")
        }),
        Effect.zipRight(
          Effect.addFinalizer(() =>
            Effect.logInfo("Neuron stopping: open handshakes close with 1001, the health file will say stopped")
          )
        )
      )
    )
    // Announced once the Neuron is built (its server listening): a start that fails says only why.
    return announce.pipe(Layer.provideMerge(neuron), Layer.provide(registry))
  })
).pipe(
  Layer.provide(NeuronConfig.layerFromEnv),
  Layer.provide(NodeContext.layer),
  // Traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; otherwise no exporter at all.
  Layer.provide(Tracing.layer("neuron").pipe(Layer.provide(NodeHttpClient.layerUndici)))
)

// Pretty on a terminal, logfmt for a service manager's journal, JSON on request (NEURON_LOG_FORMAT). Read here,
// not through NeuronConfig, because the logger must be in place before the configuration can fail.
const logger = process.env.NEURON_LOG_FORMAT === "json"
  ? Logger.json
  : process.env.NEURON_LOG_FORMAT === "logfmt" || !process.stdout.isTTY
  ? Logger.logFmt
  : Logger.pretty

SignalGuard.install()
Layer.launch(Main).pipe(
  Effect.tapErrorCause((cause) => {
    const failure = Cause.failureOption(cause).pipe(Option.filter(ConfigError.isConfigError))
    if (Option.isSome(failure)) {
      return Effect.sync(() => console.error(`neuron: configuration error: ${describeConfigError(failure.value)}`))
    }
    const storage = Cause.failureOption(cause).pipe(
      Option.filter((e): e is StorageUnavailable => e instanceof StorageUnavailable)
    )
    if (Option.isSome(storage)) return Effect.sync(() => console.error(`neuron: ${storage.value.message}`))
    return Effect.logError("the Neuron stopped on an error").pipe(Effect.annotateLogs({ error: describeCause(cause) }))
  }),
  Effect.provide(logger),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
