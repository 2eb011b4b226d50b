/**
 * The registry under test, in a child process: `AxonRegistry` on `NodeHttpServer` (127.0.0.1, port 0) over the
 * seeded data folder. Answers the parent's messages: `sweep` (times one sweep), `rss`, `stop`.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Http from "node:http"
import { monitorEventLoopDelay, performance } from "node:perf_hooks"
import * as AxonRegistry from "../../src/registry/AxonRegistry.js"
import { RegistryStore } from "../../src/registry/RegistryStore.js"

const scope = Effect.runSync(Scope.make())
const layer = AxonRegistry.layerWithServices({ dataDir: process.argv[2]!, enrollmentToken: Option.none() }).pipe(
  Layer.provideMerge(NodeHttpServer.layer(() => Http.createServer({ keepAliveTimeout: 60_000 }), {
    port: 0,
    host: "127.0.0.1"
  })),
  Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
)
const context = await Effect.runPromise(Layer.buildWithScope(layer, scope))
const store = Context.get(context, RegistryStore)
const address = Context.get(context, HttpServer.HttpServer).address
process.send!({ ready: true, port: address._tag === "TcpAddress" ? address.port : 0 })

// Event-loop delay: how long the process itself holds requests up (GC, group commits), apart from the OS.
const delay = monitorEventLoopDelay({ resolution: 1 })
delay.enable()

process.on("message", async (message: any) => {
  if (message.cmd === "delay-reset") {
    delay.reset()
    process.send!({})
  }
  if (message.cmd === "delay") {
    process.send!({ p99: delay.percentile(99) / 1e6, max: delay.max / 1e6 })
  }
  if (message.cmd === "sweep") {
    const started = performance.now()
    const result = await Effect.runPromise(store.sweep(30_000).pipe(Logger.withMinimumLogLevel(LogLevel.Error)))
    process.send!({ ms: performance.now() - started, transitions: result.transitions })
  }
  if (message.cmd === "rss") process.send!({ maxRssKb: process.resourceUsage().maxRSS })
  if (message.cmd === "cpu") process.send!(process.cpuUsage())
  if (message.cmd === "stop") {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    process.exit(0)
  }
})
