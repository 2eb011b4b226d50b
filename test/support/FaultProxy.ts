/**
 * A fault-injecting TCP proxy for tests, between a Neuron and a real registry: 127.0.0.1, port 0, forwarding bytes
 * as they are until a test switches it to a fault, at run time. Switching closes every open connection (an HTTP
 * client keeps its connections alive: without that, the old behaviour would go on over them). Faults:
 *
 * - `latency`: every chunk, both ways, `ms` later;
 * - `drop`: the request is read, then the connection is closed without an answer;
 * - `reset`: the request is forwarded and the first bytes of the registry's answer passed on, then a TCP reset;
 * - `status`: the proxy answers itself, `status` with `body` (JSON, or any text such as an HTML error page);
 * - `trickle`: the registry's answer is passed on one byte every `everyMs`;
 * - `blackhole`: the connection is accepted and read, and never answered.
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"

/** What the proxy does to the connections opened from now on. */
export type Fault =
  | { readonly _tag: "none" }
  | { readonly _tag: "latency"; readonly ms: number }
  | { readonly _tag: "drop" }
  | { readonly _tag: "reset" }
  | { readonly _tag: "status"; readonly status: number; readonly body: string; readonly contentType?: string }
  | { readonly _tag: "trickle"; readonly everyMs: number }
  | { readonly _tag: "blackhole" }

/** A running proxy. */
export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: give it to the Neuron as a registry URL. */
  readonly url: string
  /** Switches the fault for new connections and closes the open ones. */
  readonly set: (fault: Fault) => Effect.Effect<void>
  /** Connections accepted so far (each is one attempt of the Neuron's HTTP client, or a kept-alive series). */
  readonly connections: () => number
  /** HTTP requests seen so far (request lines, counted on the way in), by method and path. */
  readonly requests: () => ReadonlyArray<string>
}

const reasons: Record<number, string> = {
  401: "Unauthorized",
  404: "Not Found",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  200: "OK"
}

/** A raw HTTP/1.1 answer that closes the connection after it. */
const answer = (status: number, body: string, contentType: string) => {
  const bytes = Buffer.from(body)
  return Buffer.concat([
    Buffer.from(
      `HTTP/1.1 ${status} ${reasons[status] ?? "Status"}\r\ncontent-type: ${contentType}\r\n` +
        `content-length: ${bytes.length}\r\nconnection: close\r\n\r\n`
    ),
    bytes
  ])
}

/** Starts a proxy to `target` (`http://127.0.0.1:<port>`) for the length of the current scope. */
export const startFaultProxy = (target: string): Effect.Effect<FaultProxy, never, Scope.Scope> =>
  Effect.gen(function*() {
    const upstream = new URL(target)
    let fault: Fault = { _tag: "none" }
    let accepted = 0
    const seen: Array<string> = []
    const open = new Set<Net.Socket>()
    const track = (socket: Net.Socket) => {
      open.add(socket)
      socket.on("close", () => open.delete(socket))
      // A peer that goes away mid-way is what this proxy is for: never an unhandled error in the test process.
      socket.on("error", () => socket.destroy())
    }

    const handle = (client: Net.Socket) => {
      accepted++
      track(client)
      const mode = fault
      client.on("data", (chunk: Buffer) => {
        const line = chunk.toString("latin1").split("\r\n", 1)[0] ?? ""
        if (/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(line)) seen.push(line.split(" ").slice(0, 2).join(" "))
      })
      switch (mode._tag) {
        case "blackhole":
          return
        case "drop":
          client.once("data", () => client.destroy())
          return
        case "status":
          client.once("data", () => client.end(answer(mode.status, mode.body, mode.contentType ?? "application/json")))
          return
      }
      const server = Net.connect({ host: upstream.hostname, port: Number(upstream.port) })
      track(server)
      client.on("close", () => server.destroy())
      server.on("close", () => client.destroy())
      const later = (f: () => void) => (mode._tag === "latency" ? void setTimeout(f, mode.ms) : f())
      client.on("data", (chunk: Buffer) => later(() => server.writable && server.write(chunk)))
      if (mode._tag === "reset") {
        server.once("data", (chunk: Buffer) => {
          client.write(chunk.subarray(0, Math.max(1, Math.floor(chunk.length / 2))), () => client.resetAndDestroy())
        })
      } else if (mode._tag === "trickle") {
        const pending: Array<number> = []
        let timer: NodeJS.Timeout | undefined
        const drip = () => {
          const byte = pending.shift()
          if (byte === undefined || client.destroyed) return void (timer = undefined)
          client.write(Buffer.of(byte))
          timer = setTimeout(drip, mode.everyMs)
        }
        server.on("data", (chunk: Buffer) => {
          pending.push(...chunk)
          if (timer === undefined) drip()
        })
        client.on("close", () => timer !== undefined && clearTimeout(timer))
      } else {
        server.on("data", (chunk: Buffer) => later(() => client.writable && client.write(chunk)))
      }
    }

    const listener = Net.createServer(handle)
    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) =>
        void listener.listen(0, "127.0.0.1", () => resume(Effect.succeed((listener.address() as Net.AddressInfo).port)))
      ),
      () =>
        Effect.async<void>((resume) => {
          for (const socket of open) socket.destroy()
          listener.close(() => resume(Effect.void))
        })
    )
    return {
      url: `http://127.0.0.1:${port}`,
      set: (next) =>
        Effect.sync(() => {
          fault = next
          for (const socket of open) socket.destroy()
        }),
      connections: () => accepted,
      requests: () => [...seen]
    } satisfies FaultProxy
  })
