import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import { createServer, type IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import * as WebSocketConnection from "../../src/handshake/WebSocketConnection.js"
import { listenScoped } from "../support/http.js"
import { connect, opened } from "../support/ws.js"

describe("WebSocketConnection", () => {
  it.scopedLive(
    "dropForeignCloseListeners: the close listeners others put on the raw socket go (they would keep their owners alive), ws's stay and work",
    () =>
      Effect.gen(function*() {
        const upgrades = yield* Queue.unbounded<IncomingMessage>()
        const server = createServer()
        server.on("upgrade", (request: IncomingMessage) => Queue.unsafeOffer(upgrades, request))
        const url = yield* listenScoped(server)
        const wss = yield* WebSocketConnection.makeServer({
          maxPayloadBytes: 1024,
          closeTimeout: Duration.seconds(1)
        })
        const client = yield* connect(url.replace(/^http/, "ws"))
        const request = yield* Queue.take(upgrades)
        const socket: Duplex = request.socket
        // As the platform does: one listener before the upgrade (a request that waited), one after it.
        const before = () => {}
        const after = () => {}
        socket.on("close", before)
        const connection = Option.getOrThrow(yield* WebSocketConnection.upgrade(wss, request, Infinity))
        socket.on("close", after)
        yield* opened(client)
        const wsOwn = socket.listeners("close").filter((l) => l !== before && l !== after)
        assert.isAbove(wsOwn.length, 0)

        connection.dropForeignCloseListeners()
        assert.deepStrictEqual(socket.listeners("close"), wsOwn)
        // The connection still sees its frames and its end.
        yield* client.send("hello")
        assert.deepStrictEqual(yield* connection.next, { _tag: "Frame", data: "hello" })
        client.ws.close(1000)
        const end = yield* connection.next
        assert.strictEqual(end._tag, "Ended")
        assert.strictEqual(end._tag === "Ended" && end.closeCode, 1000)
      })
  )

  it.scopedLive("whenReady: called once the first event arrives (not before), at once when one is already there", () =>
    Effect.gen(function*() {
      const upgrades = yield* Queue.unbounded<IncomingMessage>()
      const server = createServer()
      server.on("upgrade", (request: IncomingMessage) => Queue.unsafeOffer(upgrades, request))
      const url = yield* listenScoped(server)
      const wss = yield* WebSocketConnection.makeServer({ maxPayloadBytes: 1024, closeTimeout: Duration.seconds(1) })
      const client = yield* connect(url.replace(/^http/, "ws"))
      const connection = Option.getOrThrow(
        yield* WebSocketConnection.upgrade(wss, yield* Queue.take(upgrades), Infinity)
      )
      yield* opened(client)
      const calls = yield* Queue.unbounded<string>()
      connection.whenReady(() => Queue.unsafeOffer(calls, "first"))
      yield* Effect.sleep("50 millis")
      assert.strictEqual(yield* Queue.size(calls), 0)
      yield* client.send("auth")
      assert.strictEqual(yield* Queue.take(calls), "first")
      // The frame is still there for the reader, and a later registration is called at once.
      connection.whenReady(() => Queue.unsafeOffer(calls, "again"))
      assert.strictEqual(yield* Queue.take(calls), "again")
      assert.deepStrictEqual(yield* connection.next, { _tag: "Frame", data: "auth" })
      yield* client.send("more")
      yield* Effect.sleep("50 millis")
      assert.strictEqual(yield* Queue.size(calls), 0)
    }))
})
