/**
 * The Neuron side of `pnpm bench handshake`, in the bench process: the real HandshakeServer on a real Node HTTP
 * server (127.0.0.1, port 0) with its real dependencies (ConsentVerifier, RelationshipStore and AuditLog on a
 * SQLite file migrated with NeuronMigrations, a ProviderLookup with one provider). Log lines go through a
 * logfmt logger into /dev/null, so their cost is counted without printing 20 000 lines.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import { createServer } from "node:http"
import * as ConsentVerifier from "../../src/consent/ConsentVerifier.js"
import { Npi } from "../../src/domain/Npi.js"
import * as HandshakeServer from "../../src/handshake/HandshakeServer.js"
import { ProviderLookup } from "../../src/handshake/ProviderLookup.js"
import { RelationshipStore } from "../../src/handshake/RelationshipStore.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { NeuronMigrations } from "../../src/store/migrations.js"
import { ORG, PROVIDER } from "./common.js"

/** A running Neuron handshake server. */
export interface RunningNeuron {
  readonly port: number
  readonly server: HandshakeServer.HandshakeServer["Type"]
  readonly close: () => Promise<void>
}

// Written synchronously, one write per line, as `console.log` does to a file or a pipe (src/main.ts).
const devNull = Fs.openSync("/dev/null", "w")
const logger = Logger.replace(
  Logger.defaultLogger,
  Logger.map(Logger.logfmtLogger, (line) => void Fs.writeSync(devNull, line + "\n"))
)

/** Starts the server on `filename` (a SQLite file); `close` stops it (open sockets get 1001). */
export const startNeuron = async (options: {
  readonly filename: string
  readonly authTimeoutMs: number
  readonly maxConcurrentHandshakes: number
  /** No HTTP server span for `/ws/handshake` (`HttpMiddleware.withTracerDisabledForUrls`), as NeuronHttp serves it. */
  readonly withoutHttpSpans?: boolean
}): Promise<RunningNeuron> => {
  const authTimeout = `${options.authTimeoutMs} millis` as const
  const dependencies = Layer.mergeAll(
    ConsentVerifier.layer({ organizationNpi: Npi.make(ORG), challengeTtl: authTimeout }),
    ProviderLookup.layerTest(new Map([[PROVIDER, null]])),
    RelationshipStore.Default,
    AuditLog.Default
  ).pipe(Layer.provideMerge(Sqlite.layer({ filename: options.filename, migrations: NeuronMigrations })))
  const handshake = HandshakeServer.layer({
    publicUrl: "http://127.0.0.1",
    authTimeout,
    maxConcurrentHandshakes: options.maxConcurrentHandshakes
  }).pipe(Layer.provideMerge(dependencies))
  const served = HttpLayerRouter.serve(HandshakeServer.route, { disableLogger: true, disableListenLog: true })
  const app = (options.withoutHttpSpans === true
    ? HttpMiddleware.withTracerDisabledForUrls(served, [HandshakeServer.HANDSHAKE_PATH])
    : served).pipe(
      Layer.provideMerge(handshake),
      Layer.provideMerge(NodeHttpServer.layer(
        // The settings docs/handshake.md asks of the Neuron's HTTP server.
        () => createServer({ headersTimeout: 5_000, requestTimeout: 10_000, connectionsCheckingInterval: 1_000 }),
        { port: 0, host: "127.0.0.1" }
      )),
      Layer.provide(logger)
    )
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(app, scope))
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
  return {
    port: address.port,
    server: Context.get(context, HandshakeServer.HandshakeServer),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
