/**
 * A raw `ws` client for protocol tests: send anything (binary, invalid UTF-8, unmasked frames), read every
 * message, see the close code, and read refused upgrades (status, headers, body).
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import { WebSocket } from "ws"

/** What a raw client sees. */
export type RawEvent =
  | { readonly _tag: "Open" }
  | { readonly _tag: "Message"; readonly text: string; readonly binary: boolean }
  | { readonly _tag: "Close"; readonly code: number; readonly reason: string }
  | { readonly _tag: "Error"; readonly message: string }
  | {
    readonly _tag: "Status"
    readonly status: number
    readonly headers: Record<string, string | Array<string> | undefined>
    readonly body: string
  }

/** A connected (or refused) raw client. */
export interface RawClient {
  readonly ws: WebSocket
  /** The next event of any kind. */
  readonly next: Effect.Effect<RawEvent>
  /** The next message, parsed as JSON; dies on any other event. */
  readonly message: Effect.Effect<any>
  /** Waits for the close and returns its code (skipping messages). */
  readonly closed: Effect.Effect<{ readonly code: number; readonly reason: string }>
  readonly send: (data: string | Buffer, options?: { readonly binary?: boolean }) => Effect.Effect<void>
  readonly sendJson: (value: unknown) => Effect.Effect<void>
  /** Writes bytes on the TCP socket under the WebSocket framing (for malformed frames). */
  readonly writeRaw: (bytes: Buffer) => Effect.Effect<void>
}

/** Opens a raw client; it is terminated when the scope closes. Does not wait for the upgrade. */
export const connect = (
  url: string,
  options?: { readonly origin?: string; readonly headers?: Record<string, string> }
): Effect.Effect<RawClient, never, Scope.Scope> =>
  Effect.gen(function*() {
    const events = yield* Queue.unbounded<RawEvent>()
    const offer = (e: RawEvent) => Queue.unsafeOffer(events, e)
    const ws = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const ws = new WebSocket(url, {
          perMessageDeflate: false,
          ...(options?.origin === undefined ? {} : { origin: options.origin }),
          ...(options?.headers === undefined ? {} : { headers: options.headers })
        })
        ws.on("open", () => offer({ _tag: "Open" }))
        ws.on("message", (data, isBinary) => offer({ _tag: "Message", text: data.toString(), binary: isBinary }))
        ws.on("close", (code, reason) => offer({ _tag: "Close", code, reason: reason.toString() }))
        ws.on("error", (error) => offer({ _tag: "Error", message: error.message }))
        ws.on("unexpected-response", (req, res) => {
          let body = ""
          res.setEncoding("utf8")
          res.on("data", (chunk: string) => (body += chunk))
          let done = false
          const finish = () => {
            if (done) return
            done = true
            offer({ _tag: "Status", status: res.statusCode ?? 0, headers: res.headers, body })
            req.destroy()
          }
          res.once("end", finish)
          res.once("close", finish)
        })
        return ws
      }),
      (ws) => Effect.sync(() => ws.terminate())
    )
    const next = Queue.take(events)
    const message = Effect.flatMap(next, (e) =>
      e._tag === "Open"
        ? Effect.flatMap(next, (e2) =>
          e2._tag === "Message"
            ? Effect.succeed(JSON.parse(e2.text))
            : Effect.dieMessage(`expected a message, got ${JSON.stringify(e2)}`))
        : e._tag === "Message"
        ? Effect.succeed(JSON.parse(e.text))
        : Effect.dieMessage(`expected a message, got ${JSON.stringify(e)}`))
    const closed: RawClient["closed"] = Effect.flatMap(next, (e) =>
      e._tag === "Close" ? Effect.succeed({ code: e.code, reason: e.reason }) : closed)
    return {
      ws,
      next,
      message,
      closed,
      send: (data, opts) =>
        Effect.sync(() => ws.send(data, { binary: opts?.binary ?? false })),
      sendJson: (value) => Effect.sync(() => ws.send(JSON.stringify(value))),
      writeRaw: (bytes) =>
        Effect.sync(() => (ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(bytes))
    }
  })

/** Waits for the upgrade: the Open event, or dies with whatever came instead. */
export const opened = (client: RawClient): Effect.Effect<void> =>
  Effect.flatMap(
    client.next,
    (e) => e._tag === "Open" ? Effect.void : Effect.dieMessage(`not opened: ${JSON.stringify(e)}`)
  )

/** Waits for a refused upgrade and returns it. */
export const refused = (client: RawClient) =>
  Effect.flatMap(
    client.next,
    (e) =>
      e._tag === "Status" ? Effect.succeed(e) : Effect.dieMessage(`expected an HTTP answer, got ${JSON.stringify(e)}`)
  )
