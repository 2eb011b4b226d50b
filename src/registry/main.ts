/**
 * `pnpm start:axon`: the Axon registry on its own, configured by AXON_HOST, AXON_PORT, AXON_DATA_DIR,
 * AXON_ENROLLMENT_TOKEN and AXON_DATABASE_URL (docs/registry.md). Logs are JSON lines on stdout.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as NodeServer from "../http/NodeServer.js"
import * as Tracing from "../observability/Tracing.js"
import * as SignalGuard from "../process/SignalGuard.js"
import * as AxonRegistry from "./AxonRegistry.js"

/** Where the registry listens. */
const listen = Config.all({
  host: Config.string("AXON_HOST").pipe(
    Config.withDefault("127.0.0.1"),
    Config.withDescription("interface the registry listens on")
  ),
  port: Config.port("AXON_PORT").pipe(Config.withDefault(8600), Config.withDescription("the registry's port"))
})

// Requests that arrive while the registry starts (connecting to its database, migrating) or stops answer
// `503 STARTING` / `STOPPING` at once instead of hanging: a load balancer or a Neuron's next registry URL takes them.
const ServerLive = Layer.unwrapEffect(Effect.map(listen, ({ host, port }) =>
  NodeServer.layer({
    host,
    port,
    serverOptions: {
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      // Longer than a load balancer's usual idle time-out (60 s): the balancer, not the registry, closes idle
      // connections, so it never sends a request on a connection the registry is closing.
      keepAliveTimeout: 65_000
    }
  })))

const AppLive = AxonRegistry.layerConfig().pipe(
  HttpServer.withLogAddress,
  Layer.provide(ServerLive),
  // Traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/operations.md).
  Layer.provide(Tracing.layer("axon-registry").pipe(Layer.provide(NodeHttpClient.layerUndici))),
  Layer.provide(Logger.json)
)

SignalGuard.install()
AppLive.pipe(Layer.launch, NodeRuntime.runMain({ disablePrettyLogger: true }))
