import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as TestClock from "effect/TestClock"
import { createServer } from "node:http"
import * as net from "node:net"
import { makePatientKey } from "../../src/careagent/CareAgentKeys.js"
import { connect, opened, refused } from "../support/ws.js"
import { authMessage, eventually, handshakeWith, NOW, startNeuron } from "./fixture.js"

const setup = (options?: Parameters<typeof startNeuron>[0]) =>
  Effect.zipRight(TestClock.setTime(NOW), startNeuron(options))

const httpGet = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return { status: response.status, headers: response.headers, body: await response.text() }
  })

describe("handshake transport", () => {
  it.scoped("a frame over the maximum closes with 1009; one at the maximum is read (and refused as JSON)", () =>
    Effect.gen(function*() {
      const neuron = yield* setup({ maxPayloadBytes: 1024 })
      const big = yield* Effect.tap(connect(neuron.url), opened)
      yield* big.send("x".repeat(1025))
      assert.strictEqual((yield* big.closed).code, 1009)
      const atLimit = yield* Effect.tap(connect(neuron.url), opened)
      yield* atLimit.send("x".repeat(1024))
      assert.strictEqual((yield* atLimit.message).code, "INVALID_MESSAGE")
      const failed = yield* neuron.audit.list({ action: "handshake.failed" })
      assert.deepStrictEqual(failed.map((e) => [e.details.code, e.details.close_code]), [
        ["FRAME_TOO_LARGE", 1009],
        ["INVALID_MESSAGE", 4002]
      ])
    }))

  it.scoped("the default maximum frame is 64 KiB (1009 above it)", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const client = yield* Effect.tap(connect(neuron.url), opened)
      yield* client.send("x".repeat(65_537))
      assert.strictEqual((yield* client.closed).code, 1009)
    }))

  it.scoped("invalid UTF-8 closes with 1007, a protocol violation with 1002, and the server keeps serving", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const utf8 = yield* Effect.tap(connect(neuron.url), opened)
      yield* utf8.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false })
      assert.strictEqual((yield* utf8.closed).code, 1007)
      // An unmasked client frame is a protocol violation (RFC 6455 5.1).
      const unmasked = yield* Effect.tap(connect(neuron.url), opened)
      yield* unmasked.writeRaw(Buffer.from([0x81, 0x02, 0x68, 0x69]))
      assert.strictEqual((yield* unmasked.closed).code, 1002)
      // A reserved opcode too.
      const opcode = yield* Effect.tap(connect(neuron.url), opened)
      yield* opcode.writeRaw(Buffer.from([0x83, 0x80, 1, 2, 3, 4]))
      assert.strictEqual((yield* opcode.closed).code, 1002)
      const result = yield* handshakeWith(neuron, yield* makePatientKey)
      assert.strictEqual(result.status, "new")
    }))

  it.scoped("a bad frame sent early (buffered while queued, read at the upgrade) closes with 1009, no crash", () =>
    Effect.gen(function*() {
      const neuron = yield* setup({ maxConcurrentHandshakes: 1 })
      const holder = yield* Effect.tap(connect(neuron.url), opened)
      const received: Array<Buffer> = []
      const closed = yield* Deferred.make<void>()
      const socket = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const socket = net.connect(Number(new URL(neuron.base).port), "127.0.0.1", () =>
            socket.write(
              "GET /ws/handshake HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ))
          socket.on("data", (chunk) => received.push(chunk))
          socket.on("close", () => Deferred.unsafeDone(closed, Exit.void))
          socket.on("error", () => {})
          return socket
        }),
        (socket) => Effect.sync(() => socket.destroy())
      )
      yield* eventually(neuron.server.activeSessions, (s) => s.some((x) => x.state === "queued"), "queued")
      // A masked text frame header announcing 70 000 bytes, sent before the 101 (clients must not do that).
      socket.write(Buffer.from([0x81, 0xff, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70, 1, 2, 3, 4]))
      holder.ws.close(1000)
      yield* Deferred.await(closed)
      const bytes = Buffer.concat(received)
      const headerEnd = bytes.indexOf("\r\n\r\n")
      assert.match(bytes.subarray(0, headerEnd).toString(), /^HTTP\/1\.1 101/)
      const frame = bytes.subarray(headerEnd + 4)
      assert.strictEqual(frame[0], 0x88) // a close frame
      assert.strictEqual(frame.readUInt16BE(2), 1009)
      assert.strictEqual((yield* handshakeWith(neuron, yield* makePatientKey)).status, "new")
    }))

  it.scoped("an upgrade on another path is answered 404 by the router; other routes share the server", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const client = yield* connect(`${neuron.base}/ws/provider/1558598797`)
      const answer = yield* refused(client)
      assert.strictEqual(answer.status, 404)
      const health = yield* httpGet(`${neuron.base.replace("ws:", "http:")}/health`)
      assert.strictEqual(health.status, 200)
      assert.deepStrictEqual(JSON.parse(health.body), { status: "ok" })
    }))

  it.scoped("a plain GET /ws/handshake (no upgrade) is answered 426", () =>
    Effect.gen(function*() {
      const neuron = yield* setup()
      const answer = yield* httpGet(neuron.url.replace("ws:", "http:"))
      assert.strictEqual(answer.status, 426)
      assert.strictEqual(JSON.parse(answer.body).error.code, "UPGRADE_REQUIRED")
    }))

  it.scoped("Origin allowlist: an Origin outside it gets 403 before upgrading; a listed one and none are allowed", () =>
    Effect.gen(function*() {
      const neuron = yield* setup({ allowedOrigins: ["https://app.example.org", "http://localhost:3000"] })
      const evil = yield* connect(neuron.url, { origin: "https://evil.example.org" })
      const answer = yield* refused(evil)
      assert.strictEqual(answer.status, 403)
      assert.strictEqual(JSON.parse(answer.body).error.code, "FORBIDDEN")
      assert.strictEqual((yield* neuron.server.activeSessions).length, 0)
      const nullOrigin = yield* connect(neuron.url, { origin: "null" })
      assert.strictEqual((yield* refused(nullOrigin)).status, 403)
      // Listed (scheme and host case, default port: the same origin).
      const listed = yield* connect(neuron.url, { origin: "HTTPS://App.Example.org:443" })
      yield* opened(listed)
      yield* listed.sendJson(yield* authMessage(yield* makePatientKey))
      assert.strictEqual((yield* listed.message).type, "handshake.challenge")
      // No Origin: a non-browser agent.
      const result = yield* handshakeWith(neuron, yield* makePatientKey)
      assert.strictEqual(result.status, "new")
      const viaClient = yield* handshakeWith(neuron, yield* makePatientKey, {
        origin: "https://evil.example.org",
        patient_agent_id: "p2"
      }).pipe(Effect.flip)
      assert.strictEqual(viaClient.reason, "HttpStatus")
      assert.strictEqual(viaClient.status, 403)
      assert.strictEqual(viaClient.code, "FORBIDDEN")
    }))
})

describe("HTTP server settings the lead applies (TRAPS.md: the header time-out is swept)", () => {
  it.scopedLive("headersTimeout with a short connectionsCheckingInterval cuts a slow upgrade request; a queued one survives", () =>
    Effect.gen(function*() {
      const neuron = yield* startNeuron(
        { maxConcurrentHandshakes: 1 },
        undefined,
        () => createServer({ headersTimeout: 300, requestTimeout: 300, connectionsCheckingInterval: 50 })
      )
      const port = Number(new URL(neuron.base).port)
      // Headers that never finish: the server answers 408 and closes, well before Node's 30 s default sweep.
      const slow = yield* Effect.async<string>((resume) => {
        const socket = net.connect(
          port,
          "127.0.0.1",
          () => socket.write("GET /ws/handshake HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        )
        let received = ""
        socket.on("data", (chunk) => (received += chunk.toString()))
        socket.on("close", () => resume(Effect.succeed(received)))
        socket.on("error", () => {})
      })
      assert.match(slow, /^HTTP\/1\.1 408/)
      // A complete upgrade request waiting in the queue is not a slow request: it outlives requestTimeout.
      const holder = yield* Effect.tap(connect(neuron.url), opened)
      const queued = yield* connect(neuron.url)
      yield* eventually(neuron.server.activeSessions, (s) => s.some((x) => x.state === "queued"), "queued")
      yield* Effect.sleep("700 millis")
      assert.isTrue((yield* neuron.server.activeSessions).some((x) => x.state === "queued"))
      holder.ws.close(1000)
      yield* opened(queued)
    }))
})
