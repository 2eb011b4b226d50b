/**
 * A failover of the registry's PostgreSQL to its standby, as the registry sees it when the old primary's host is
 * gone without a reset (powered off, cut off): its connections go silent for good, while the address now leads to
 * the new primary. A TCP proxy stands for that address: at the failover it stops passing bytes on every connection
 * open then (nothing closed, nothing answered, as TCP behaves with a peer that vanished) and passes new ones to the
 * database. The registry answers `503 UNAVAILABLE` meanwhile and serves again by itself through new connections.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Net from "node:net"
import { waitFor } from "../support/neuron.js"
import { freshDatabase } from "../support/postgres.js"
import { startRegistry } from "../support/registry.js"
import { call, heartbeat, register } from "./support.js"

/** A TCP proxy to `port`; `silence()` stops every connection open now for good (new ones pass). */
const silencingProxy = (port: number): Effect.Effect<
  { readonly port: number; readonly silence: () => number },
  never,
  Scope.Scope
> =>
  Effect.acquireRelease(
    Effect.async<{ server: Net.Server; sockets: Set<Net.Socket>; port: number }>((resume) => {
      const sockets = new Set<Net.Socket>()
      const server = Net.createServer((client) => {
        const upstream = Net.connect(port, "127.0.0.1")
        const end = () => {
          client.destroy()
          upstream.destroy()
        }
        for (const socket of [client, upstream]) {
          sockets.add(socket)
          socket.on("error", end)
          socket.on("close", end)
        }
        client.pipe(upstream)
        upstream.pipe(client)
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, sockets, port: (server.address() as Net.AddressInfo).port })))
    }),
    ({ server, sockets }) =>
      Effect.sync(() => {
        for (const socket of sockets) {
          socket.destroy()
        }
        server.close()
      })
  ).pipe(Effect.map(({ port, sockets }) => ({
    port,
    silence: () => {
      const silenced = [...sockets]
      for (const socket of silenced) {
        socket.unpipe()
        socket.pause()
        sockets.delete(socket)
      }
      return silenced.length
    }
  })))

describe("the registry's PostgreSQL failing over to its standby", () => {
  it.scopedLive(
    "failover to the standby with the old primary's connections silent for good: 503 UNAVAILABLE (and /health " +
      "says so) without hanging past the time-outs, then serving again by itself through new connections, the " +
      "registration kept",
    () =>
      Effect.gen(function*() {
        const databaseUrl = yield* freshDatabase()
        const direct = new URL(databaseUrl)
        const proxy = yield* silencingProxy(Number(direct.port))
        const viaProxy = new URL(databaseUrl)
        viaProxy.port = String(proxy.port)
        const registry = yield* startRegistry({ store: "postgres", databaseUrl: viaProxy.toString() })
        const reg = yield* register(registry.url, 1)
        assert.strictEqual((yield* heartbeat(registry.url, reg.registration_id, reg.bearer_token)).status, 200)

        assert.isAbove(proxy.silence(), 0, "the pool had connections open")
        // The pool's connections are silent now: the first statements wait for the time-outs, then 503.
        const during = yield* waitFor(
          "503 UNAVAILABLE",
          Effect.map(
            heartbeat(registry.url, reg.registration_id, reg.bearer_token),
            (answer) => (answer.status === 503 ? Option.some(answer) : Option.none())
          ),
          30_000
        )
        assert.strictEqual(during.body.error.code, "UNAVAILABLE")
        const healthDuring = yield* call(registry.url, "GET", "/health")
        assert.deepStrictEqual([healthDuring.status, healthDuring.body.error.code], [503, "UNAVAILABLE"])

        // Serving again by itself, through connections to the new primary; the old ones stay silent for ever.
        yield* waitFor(
          "the registry serving again",
          Effect.map(
            heartbeat(registry.url, reg.registration_id, reg.bearer_token),
            (answer) => (answer.status === 200 ? Option.some(answer) : Option.none())
          ),
          30_000
        )
        const health = yield* call(registry.url, "GET", "/health")
        assert.strictEqual(health.status, 200)
        assert.strictEqual(
          (yield* call(registry.url, "GET", `/v1/neurons/${reg.registration_id}`, {
            token: reg.bearer_token
          })).status,
          200
        )
      }),
    90_000
  )
})
