/**
 * The Node HTTP server every entry point uses (`pnpm start`, `pnpm start:axon`, the demo, tests): its header
 * time-out is enforced within a second. Node only sweeps slow requests every `connectionsCheckingInterval`
 * (30 s by default), so a slow upgrade request could otherwise hold a socket that long (TRAPS.md).
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as HttpServer from "@effect/platform/HttpServer"
import * as Option from "effect/Option"
import { createServer, Server, type ServerOptions } from "node:http"

/**
 * A Node HTTP server layer on `host:port` (port 0: any free port); `serverOptions` adds to or overrides the time-outs
 * below. The platform listens as soon as the layer is built but attaches its handler only when the application
 * starts serving, and detaches it first when the application stops, before the services behind it close and the
 * server stops listening. In either window a request would hang (until the caller gives up, or the connection is
 * swept), so a fallback answers it while it is the only request listener: `503 STARTING` before the application
 * served, `503 STOPPING` (and `Connection: close`) after, both with `Retry-After: 1`. A client with another address
 * (the Neuron's registry list, a load balancer) goes there at once.
 */
export const layer = (options: {
  readonly host: string
  readonly port: number
  readonly serverOptions?: ServerOptions
}) =>
  NodeHttpServer.layer(() => {
    const server = createServer({
      headersTimeout: 5_000,
      requestTimeout: 15_000,
      connectionsCheckingInterval: 1_000,
      ...options.serverOptions
    })
    made.add(server)
    server.once("close", () => made.delete(server))
    let served = false
    server.on("request", (_request, response) => {
      if (server.listenerCount("request") > 1) return
      const [code, message] = served
        ? ["STOPPING", "the server is stopping; try another address or again shortly"]
        : ["STARTING", "the server is starting; try again shortly"]
      response.writeHead(503, {
        "content-type": "application/json",
        "retry-after": "1",
        ...(served ? { connection: "close" } : {})
      })
      response.end(JSON.stringify({ error: { code, message } }))
    })
    // Added after the fallback: a second request listener is the application's handler.
    server.on("newListener", (event) => {
      if (event === "request") served = true
    })
    return server
  }, options)

/** The Node servers this module made and that are still open: found without asking Node for its handles. */
const made = new Set<Server>()

/** The base URL (`http://host:port`) a server listens on; `0.0.0.0` and `::` are shown as loopback. */
export const urlOf = (server: HttpServer.HttpServer): string => {
  const address = server.address
  if (address._tag !== "TcpAddress") return `http://unix:${address.path}`
  const host = address.hostname === "0.0.0.0" || address.hostname === "::" ? "127.0.0.1" : address.hostname
  return `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`
}

/**
 * The Node `http.Server` behind an `HttpServer` of `@effect/platform-node` (NodeHttpServer.layer / make), for a
 * part that must listen to Node events the platform does not expose (the handshake takes its WebSocket
 * upgrades from the `upgrade` event). The platform exposes only the address it listens on, so the server is the
 * listening Node server at that address: first among the servers `layer` made (every entry point's), then, for a
 * host's own `NodeHttpServer.layer`, among the process's referenced handles (`process._getActiveHandles`, an
 * undocumented Node API). None: the HttpServer is not a Node server of this process, or it was `unref`'d.
 */
export const nodeServerOf = (server: HttpServer.HttpServer): Option.Option<Server> => {
  const wanted = server.address
  const handles: ReadonlyArray<unknown> = [
    ...made,
    ...((process as { _getActiveHandles?: () => Array<unknown> })._getActiveHandles?.() ?? [])
  ]
  for (const handle of handles) {
    if (!(handle instanceof Server) || !handle.listening) continue
    const address = handle.address()
    if (address === null) continue
    if (typeof address === "string") {
      if (wanted._tag === "UnixAddress" && wanted.path === address) return Option.some(handle)
      continue
    }
    // The platform reports `::` as 0.0.0.0 (NodeHttpServer.make).
    const hostname = address.address === "::" ? "0.0.0.0" : address.address
    if (wanted._tag === "TcpAddress" && wanted.port === address.port && wanted.hostname === hostname) {
      return Option.some(handle)
    }
  }
  return Option.none()
}
