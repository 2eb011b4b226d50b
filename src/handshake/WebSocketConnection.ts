/**
 * The WebSocket half of a handshake connection, on `ws` directly (see docs/handshake.md, "Upgrade"):
 * our own `WebSocketServer` in `noServer` mode, so that the frame limit (1009), UTF-8 validation (1007),
 * no compression and the close time-out are ours to set; the platform's upgrade uses a `WebSocketServer`
 * with `ws` defaults (100 MiB frames) that cannot be configured.
 *
 * Listeners are attached inside the upgrade callback, before anything else runs: a frame the client sent
 * while its upgrade waited in the queue (kept in the paused socket) is read by them, and an `error` event
 * always has a listener (an EventEmitter `error` without one would be thrown and take the process down).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { IncomingMessage } from "node:http"
import { WebSocket, WebSocketServer } from "ws"
import type { Inbound } from "./HandshakeProtocol.js"

/** Limits of the handshake's WebSocket server. */
export interface WebSocketLimits {
  /** The largest accepted frame (or message) in bytes: larger closes with 1009. */
  readonly maxPayloadBytes: number
  /** How long to wait for the peer's close frame (or TCP close) after ours before dropping the socket. */
  readonly closeTimeout: Duration.Duration
}

/** The `ws` server used only for `handleUpgrade`; closed with the scope. */
export const makeServer = (limits: WebSocketLimits): Effect.Effect<WebSocketServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      new WebSocketServer({
        noServer: true,
        clientTracking: false,
        maxPayload: limits.maxPayloadBytes,
        perMessageDeflate: false,
        skipUTF8Validation: false,
        // Not in @types/ws 8.18, in ws 8.23.
        ...({ closeTimeout: Duration.toMillis(limits.closeTimeout) } as {})
      })
    ),
    (wss) => Effect.async<void>((resume) => wss.close(() => resume(Effect.void)))
  )

/** An upgraded connection. */
export interface Upgraded {
  /** The next frame or the end of the connection; None when `within` elapses first. */
  readonly next: (within: Duration.Duration) => Effect.Effect<Option.Option<Inbound>>
  /** The next frame or end if one has already arrived. */
  readonly poll: Effect.Effect<Option.Option<Inbound>>
  readonly send: (text: string) => Effect.Effect<void>
  /** Starts the closing handshake with `code` (once; later calls do nothing). */
  readonly close: (code: number, reason: string) => Effect.Effect<void>
}

const EMPTY_HEAD = Buffer.alloc(0)

/** auth, challenge_response, and one more to refuse. */
const MAX_FRAMES = 3

/** How `ws` reports a refused frame, as a close code and a name for the audit log. */
const classify = (error: unknown): { readonly closeCode: number; readonly code: string } => {
  switch ((error as { code?: unknown } | null)?.code) {
    case "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH":
      return { closeCode: 1009, code: "FRAME_TOO_LARGE" }
    case "WS_ERR_INVALID_UTF8":
      return { closeCode: 1007, code: "INVALID_UTF8" }
    default:
      return { closeCode: 1002, code: "PROTOCOL_ERROR" }
  }
}

/**
 * Completes the WebSocket upgrade of `incoming` (the 101 is written now). None when the client went away or
 * `ws` refused the upgrade request (it answers 400/405 itself). When the scope closes, a connection that was
 * not closed yet is closed with 1001 (going away), and the scope waits until the socket is gone (at most the
 * close time-out), so that nothing else is ever written to it.
 */
export const upgrade = (
  wss: WebSocketServer,
  incoming: IncomingMessage
): Effect.Effect<Option.Option<Upgraded>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const inbox = yield* Queue.unbounded<Inbound>()
    const acquire = Effect.async<Option.Option<WebSocket>>((resume) => {
      const socket = incoming.socket
      if (socket.destroyed) return resume(Effect.succeed(Option.none()))
      const gone = () => resume(Effect.succeed(Option.none()))
      socket.once("close", gone)
      wss.handleUpgrade(incoming, socket, EMPTY_HEAD, (ws) => {
        socket.off("close", gone)
        let refused: { readonly closeCode: number; readonly code: string } | undefined
        let frames = 0
        ws.on("message", (data, isBinary) => {
          // The protocol reads at most three frames (the third is already an error): more are dropped
          // unread, so a client flooding frames cannot make the server hold them in memory.
          if (++frames > MAX_FRAMES) return
          const frame = isBinary
            ? new Uint8Array(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer))
            : data.toString()
          Queue.unsafeOffer(inbox, { _tag: "Frame", data: frame })
        })
        ws.on("error", (error) => {
          refused = classify(error)
        })
        ws.once("close", (closeCode) => {
          Queue.unsafeOffer(inbox, { _tag: "Ended", ...(refused ?? { closeCode, code: "CONNECTION_CLOSED" }) })
        })
        resume(Effect.succeed(Option.some(ws)))
      })
      return Effect.sync(() => socket.off("close", gone))
    })
    const ws = yield* Effect.acquireRelease(
      acquire,
      Option.match({
        onNone: () => Effect.void,
        onSome: (ws) =>
          Effect.async<void>((resume) => {
            if (ws.readyState === WebSocket.CLOSED) return resume(Effect.void)
            ws.once("close", () => resume(Effect.void))
            if (ws.readyState === WebSocket.OPEN) ws.close(1001, "going away")
          })
      })
    )
    if (Option.isNone(ws)) return Option.none()
    const socket = ws.value
    // Once Ended is taken it stays the answer: put it back for the next reader.
    const take = Effect.tap(Queue.take(inbox), (event) =>
      event._tag === "Ended" ? Queue.offer(inbox, event) : Effect.void)
    const upgraded: Upgraded = {
      next: (within) =>
        Duration.isFinite(within) ? Effect.timeoutOption(take, within) : Effect.map(take, Option.some),
      poll: Effect.tap(Queue.poll(inbox), (event) =>
        Option.isSome(event) && event.value._tag === "Ended" ? Queue.offer(inbox, event.value) : Effect.void),
      send: (text) =>
        Effect.sync(() =>
          socket.readyState === WebSocket.OPEN && socket.send(text)
        ),
      close: (code, reason) => Effect.sync(() => socket.readyState === WebSocket.OPEN && socket.close(code, reason))
    }
    return Option.some(upgraded)
  })
